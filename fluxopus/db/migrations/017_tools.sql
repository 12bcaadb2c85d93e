-- Skill tools (issue 16): a skill's versioned `tools`, each run's tool calls, and a company switch.

-- The tools a skill's runs may offer the model (ai/tools.py checks their shape; the API, their hosts).
alter table skills add column tools jsonb not null default '[]'
  check (jsonb_typeof(tools) = 'array' and jsonb_array_length(tools) <= 20);
alter table skill_versions add column tools jsonb not null default '[]';

-- Versions: every column a skill shares with skill_versions is content, save its identity, owner and
-- visibility; so a column added to both (tools here) is versioned without these functions naming it.
create or replace function fluxopus.bump_skill_version() returns trigger
language plpgsql
as $$
declare
  not_content text[] := array['id', 'company_id', 'owner_id', 'visibility', 'version', 'created_at', 'updated_at'];
begin
  if (to_jsonb(new) - not_content) is distinct from (to_jsonb(old) - not_content) then
    new.version := old.version + 1;
  else
    new.version := old.version;
  end if;
  new.updated_at := now();
  return new;
end
$$;

create or replace function fluxopus.record_skill_version() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' or new.version <> old.version then
    insert into public.skill_versions
    select (jsonb_populate_record(null::public.skill_versions,
              (to_jsonb(new) - array['id', 'owner_id', 'visibility', 'created_at', 'updated_at'])
              || jsonb_build_object('id', gen_random_uuid(), 'skill_id', new.id, 'created_at', now(),
                                    'created_by', coalesce(fluxopus.uid(), new.owner_id)))).*;
  end if;
  return null;
end
$$;

-- Every tool call of a run (name, arguments, status, duration; never a token nor the answer), in order.
alter table skill_runs add column tool_calls jsonb not null default '[]';

-- Append one call to the caller's own open run. Called alone, in autocommit, by the service (like
-- finish_run): the run's transaction ended before the model was asked.
create function fluxopus.record_tool_call(caller jsonb, run uuid, call jsonb) returns boolean
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  perform set_config('request.jwt.claims', caller::text, true);
  update public.skill_runs r set tool_calls = r.tool_calls || jsonb_build_array(call)
   where r.id = run and r.user_id = fluxopus.uid() and r.status in ('queued', 'running');
  return found;
end
$$;
revoke execute on function fluxopus.record_tool_call(jsonb, uuid, jsonb) from public, anon, authenticated;

-- Admins may turn tools off for the whole company: runs then offer the model none.
alter table companies add column tools_enabled boolean not null default true;
grant update (tools_enabled) on companies to authenticated;
create policy companies_admin_update on companies for update to authenticated
  using (id = (select fluxopus.company_id()) and (select fluxopus.is_admin()))
  with check (id = (select fluxopus.company_id()));
