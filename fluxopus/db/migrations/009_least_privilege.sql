-- Least privilege. Migrations 001–005 ended with `grant execute on all functions in schema fluxopus
-- to authenticated`, which granted back, each time, the functions an earlier one had kept from it:
-- `charge_tokens`, `start_run` and `finish_run` act for whoever the claims they are given name, and
-- `take_oauth_state` hands out any pending OAuth flow. PostgreSQL also lets PUBLIC (so `anon`) execute
-- every new function. From here on, `authenticated` executes exactly the functions named below, and
-- nobody else any; tests/security/test_privileges.py holds the list of every function and table
-- privilege `authenticated` and `anon` have against an allowlist.

revoke execute on all functions in schema fluxopus from public, anon, authenticated;
-- Functions created later (by the role that runs migrations) are not executable by PUBLIC either.
alter default privileges in schema fluxopus revoke execute on functions from public;

-- The helpers RLS policies call, as the querying user.
grant execute on function fluxopus.claims(), fluxopus.uid(), fluxopus.company_id(), fluxopus.is_admin(),
  fluxopus.can_read_entity(text, uuid)
  to authenticated;
-- What resolvers call in the caller's own transaction. Each checks the caller itself.
grant execute on function fluxopus.set_task_assignee(uuid, uuid), fluxopus.matching_chunks(tsquery, integer),
  fluxopus.connection_secrets(uuid), fluxopus.change_membership(uuid, text),
  fluxopus.invite_member(text, text, text, interval)
  to authenticated;
-- Trigger functions need no grant: PostgreSQL checks EXECUTE when a trigger is created, not when it fires.

-- Runs are recorded by fluxopus.start_run, as the service; a user inserting one directly could pick
-- any column (status, usage, output).
drop policy skill_runs_insert on skill_runs;
revoke insert on skill_runs from authenticated;

-- Tag assignments are added and removed, never updated (no policy ever allowed it).
revoke update on entity_tags from authenticated;

-- A time log stays on a task its author (or an admin) can read, and keeps its author.
drop policy time_logs_update on time_logs;
create policy time_logs_update on time_logs for update to authenticated
  using (company_id = (select fluxopus.company_id())
         and (user_id = (select fluxopus.uid()) or (select fluxopus.is_admin())))
  with check (company_id = (select fluxopus.company_id())
              and (user_id = (select fluxopus.uid()) or (select fluxopus.is_admin()))
              and exists (select 1 from tasks t where t.id = task_id));
