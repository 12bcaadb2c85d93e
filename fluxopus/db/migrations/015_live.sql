-- Live events (GraphQL subscriptions taskEvents, knowledgeEvents, skillRunEvents, tagEvents).
--
-- Every committed change to a task (or its time logs), knowledge item, skill run, tag or tag assignment
-- is recorded in `change_log` and announced with NOTIFY on `fluxopus_changes`, carrying ids only
-- ("<change id> <company id> <kind>"). Each server process LISTENs once and decides per subscriber,
-- under RLS, who may see what (fluxopus.live_visibility below).
--
-- Change ids follow commit order. The recording triggers are deferred to commit and take one advisory
-- lock, held until the transaction has committed, before drawing an id: a change committed later always
-- has a larger id. So "everything after id N" is exactly what a subscriber that saw N missed, and
-- notifications (delivered in commit order) arrive in id order. The price: writing transactions commit
-- one at a time from their first change on (the lock is taken at commit, after all other work).

create table change_log (
  id bigint primary key,
  at timestamptz not null default now(),
  company_id uuid not null,
  kind text not null check (kind in ('task', 'knowledge', 'skill_run', 'tag', 'entity_tag')),
  op text not null check (op in ('created', 'updated', 'deleted', 'status', 'assigned', 'unassigned')),
  entity_id uuid not null,
  -- Before an update or delete: the columns that decide who could read the row (and the filters'), so a
  -- row hidden or deleted by the change still reaches exactly who saw it before.
  old jsonb,
  detail jsonb  -- a status change's status and error; an assignment's entity
);
create sequence change_log_id_seq owned by change_log.id;
create index change_log_at_idx on change_log (at);
alter table change_log enable row level security;
-- Which changes happened in a company is visible to its members; what each one may learn of the row
-- itself is decided per row by fluxopus.live_visibility, with the row's own policies.
create policy change_log_read on change_log for select to authenticated
  using (company_id = (select fluxopus.company_id()));
grant select on change_log to authenticated;

-- Up to which id the log was pruned: a subscriber asking for changes after an older id gets RESYNC.
create table change_log_horizon (
  only_row boolean primary key default true check (only_row),
  pruned_upto bigint not null default 0
);
alter table change_log_horizon enable row level security;  -- the service's bookkeeping: no policy, no grant
insert into change_log_horizon default values;

create function fluxopus.record_change(
  company uuid, kind text, op text, entity uuid, old jsonb, detail jsonb
) returns void
language plpgsql security definer set search_path = pg_catalog, public
as $$
declare
  change_id bigint;
begin
  perform pg_advisory_xact_lock(7364118245521);  -- ids in commit order (see above)
  change_id := nextval('public.change_log_id_seq');
  insert into public.change_log (id, company_id, kind, op, entity_id, old, detail)
    values (change_id, company, kind, op, entity, old, detail);
  perform pg_notify('fluxopus_changes', change_id || ' ' || company || ' ' || kind);
end
$$;

create function fluxopus.log_task_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' then
    perform fluxopus.record_change(new.company_id, 'task', 'created', new.id, null, null);
  elsif tg_op = 'UPDATE' then
    perform fluxopus.record_change(new.company_id, 'task', 'updated', new.id,
      jsonb_build_object('created_by', old.created_by, 'assignee_id', old.assignee_id, 'status', old.status), null);
  else
    perform fluxopus.record_change(old.company_id, 'task', 'deleted', old.id,
      jsonb_build_object('created_by', old.created_by, 'assignee_id', old.assignee_id, 'status', old.status), null);
  end if;
  return null;
end
$$;
create constraint trigger tasks_live after insert or update or delete on tasks
  deferrable initially deferred for each row execute function fluxopus.log_task_change();

-- A time log changes its task's total minutes: an update of the task, unless the task went with it.
create function fluxopus.log_time_log_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
declare
  task uuid := case when tg_op = 'DELETE' then old.task_id else new.task_id end;
  company uuid := case when tg_op = 'DELETE' then old.company_id else new.company_id end;
begin
  if exists (select 1 from public.tasks t where t.id = task) then
    perform fluxopus.record_change(company, 'task', 'updated', task, null, null);
  end if;
  return null;
end
$$;
create constraint trigger time_logs_live after insert or update or delete on time_logs
  deferrable initially deferred for each row execute function fluxopus.log_time_log_change();

create function fluxopus.log_knowledge_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' then
    perform fluxopus.record_change(new.company_id, 'knowledge', 'created', new.id, null, null);
  elsif tg_op = 'UPDATE' then
    -- STATUS: indexing moved on (the worker's update); an edit, which also sends it back to pending, is
    -- an update.
    perform fluxopus.record_change(new.company_id, 'knowledge',
      case when new.status is distinct from old.status
                and (new.title, new.content, new.source_url, new.visibility, new.owner_id)
                    is not distinct from (old.title, old.content, old.source_url, old.visibility, old.owner_id)
           then 'status' else 'updated' end, new.id,
      jsonb_build_object('owner_id', old.owner_id, 'visibility', old.visibility),
      jsonb_build_object('status', new.status, 'error', new.error));
  else
    perform fluxopus.record_change(old.company_id, 'knowledge', 'deleted', old.id,
      jsonb_build_object('owner_id', old.owner_id, 'visibility', old.visibility), null);
  end if;
  return null;
end
$$;
-- Only the columns a reader sees: the worker's bookkeeping (revision) alone is no change.
create constraint trigger knowledge_live after insert or delete on knowledge
  deferrable initially deferred for each row execute function fluxopus.log_knowledge_change();
create constraint trigger knowledge_live_update
  after update of title, content, source_url, visibility, status, error, owner_id on knowledge
  deferrable initially deferred for each row execute function fluxopus.log_knowledge_change();

create function fluxopus.log_skill_run_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' then
    perform fluxopus.record_change(new.company_id, 'skill_run', 'created', new.id, null,
      jsonb_build_object('skill_id', new.skill_id));
  elsif tg_op = 'UPDATE' then
    perform fluxopus.record_change(new.company_id, 'skill_run', 'updated', new.id,
      jsonb_build_object('user_id', old.user_id, 'skill_id', old.skill_id),
      jsonb_build_object('skill_id', new.skill_id));
  else
    perform fluxopus.record_change(old.company_id, 'skill_run', 'deleted', old.id,
      jsonb_build_object('user_id', old.user_id, 'skill_id', old.skill_id),
      jsonb_build_object('skill_id', old.skill_id));
  end if;
  return null;
end
$$;
-- Started and finished (status, usage): the budget's reservation bookkeeping alone is no change.
create constraint trigger skill_runs_live after insert or delete on skill_runs
  deferrable initially deferred for each row execute function fluxopus.log_skill_run_change();
create constraint trigger skill_runs_live_update
  after update of status, output, error, input_tokens, output_tokens, finished_at on skill_runs
  deferrable initially deferred for each row execute function fluxopus.log_skill_run_change();

create function fluxopus.log_tag_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' then
    perform fluxopus.record_change(new.company_id, 'tag', 'created', new.id, null, null);
  elsif tg_op = 'UPDATE' then
    perform fluxopus.record_change(new.company_id, 'tag', 'updated', new.id, '{}', null);
  else
    perform fluxopus.record_change(old.company_id, 'tag', 'deleted', old.id, '{}', null);
  end if;
  return null;
end
$$;
create constraint trigger tags_live after insert or update or delete on tags
  deferrable initially deferred for each row execute function fluxopus.log_tag_change();

-- An assignment's change is the tag's (entity_id = the tag), with the tagged entity in `detail`; one
-- removed because its tag or its entity was deleted is not announced: that deletion is.
create function fluxopus.log_entity_tag_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
declare
  rec public.entity_tags := case when tg_op = 'DELETE' then old else new end;
begin
  if tg_op = 'DELETE' and not (exists (select 1 from public.tags g where g.id = rec.tag_id)
                                and fluxopus.entity_exists(rec.entity_type, rec.entity_id)) then
    return null;
  end if;
  perform fluxopus.record_change(rec.company_id, 'entity_tag',
    case when tg_op = 'DELETE' then 'unassigned' else 'assigned' end, rec.tag_id, null,
    jsonb_build_object('entity_type', rec.entity_type, 'entity_id', rec.entity_id));
  return null;
end
$$;
create constraint trigger entity_tags_live after insert or delete on entity_tags
  deferrable initially deferred for each row execute function fluxopus.log_entity_tag_change();

-- Whether a taggable entity still exists, whoever may read it (for the trigger above, as the service).
create function fluxopus.entity_exists(kind text, entity uuid) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, public
as $$
declare
  rel regclass := (select relation from public.taggable_types where entity_type = kind);
  found boolean;
begin
  if rel is null then
    return false;
  end if;
  execute format('select exists (select 1 from %s where id = $1)', rel) into found using entity;
  return found;
end
$$;
revoke all on function fluxopus.entity_exists(text, uuid) from public;  -- the triggers' own

-- Whether `me` (an admin or not) could read a row as it was before a change, from the columns the log
-- kept: each line is the read policy of its table (001_spine tasks_read, 003_knowledge knowledge_read,
-- 002_skills skill_runs_read, 001_spine tags_read), over `old` instead of the row. The company is the
-- change log's own policy. The caller passes who it is (fluxopus.uid(), fluxopus.is_admin()), read once
-- per statement: a plain expression PostgreSQL inlines, where calling those per row cost ~0.1 ms a row.
-- tests/test_live_visibility.py checks each line against its table's policy.
create function fluxopus.could_read(kind text, old jsonb, me uuid, admin boolean) returns boolean
language sql immutable
as $$
  select coalesce(case kind
    when 'task' then admin or (old ->> 'created_by')::uuid = me or (old ->> 'assignee_id')::uuid = me
    when 'knowledge' then old ->> 'visibility' = 'company' or (old ->> 'owner_id')::uuid = me
    when 'skill_run' then (old ->> 'user_id')::uuid = me or admin
    when 'tag' then true
    else false
  end, false)  -- a column compared with a NULL one (no assignee) is NULL, not false
$$;

-- For each identity (a user's JWT claims) and each change: can they read the row now (its table's RLS,
-- one join per kind), could they before (could_read). One statement for a whole batch of changes and
-- every subscriber identity of a process: it becomes `authenticated` and switches the claims per
-- identity (set_config(..., true): for the rest of the caller's transaction only), so the row policies
-- judge each one as a request of theirs would. Only the service calls it (it acts for whoever it is
-- given): no grant.
create function fluxopus.live_visibility(identities text[], change_ids bigint[])
returns table (identity integer, change_id bigint, visible_now boolean, visible_before boolean)
language plpgsql
set search_path = pg_catalog, public
as $$
declare
  me uuid;
  admin boolean;
begin
  perform set_config('role', 'authenticated', true);
  for i in 1 .. coalesce(array_length(identities, 1), 0) loop
    perform set_config('request.jwt.claims', identities[i], true);
    me := fluxopus.uid();
    admin := fluxopus.is_admin();
    return query
      select i, c.id,
             case c.kind
               when 'task' then t.id is not null
               when 'knowledge' then k.id is not null
               when 'skill_run' then r.id is not null
               when 'tag' then g.id is not null
               when 'entity_tag' then g.id is not null and fluxopus.can_read_entity(
                 c.detail ->> 'entity_type', (c.detail ->> 'entity_id')::uuid)
               else false
             end,
             c.old is not null and fluxopus.could_read(c.kind, c.old, me, admin)
        from public.change_log c  -- change_log_read: the identity's company only
        left join public.tasks t on c.kind = 'task' and t.id = c.entity_id
        left join public.knowledge k on c.kind = 'knowledge' and k.id = c.entity_id
        left join public.skill_runs r on c.kind = 'skill_run' and r.id = c.entity_id
        left join public.tags g on c.kind in ('tag', 'entity_tag') and g.id = c.entity_id
       where c.id = any(change_ids);
  end loop;
end
$$;

revoke all on function fluxopus.record_change(uuid, text, text, uuid, jsonb, jsonb), fluxopus.log_task_change(),
  fluxopus.log_time_log_change(), fluxopus.log_knowledge_change(), fluxopus.log_skill_run_change(),
  fluxopus.log_tag_change(), fluxopus.log_entity_tag_change(), fluxopus.live_visibility(text[], bigint[])
  from public;
revoke all on function fluxopus.could_read(text, jsonb, uuid, boolean) from public;
grant execute on function fluxopus.could_read(text, jsonb, uuid, boolean) to authenticated;  -- live_visibility's
