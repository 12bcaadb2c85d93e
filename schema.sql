--
-- PostgreSQL database dump
--

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: fluxopus; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA fluxopus;

--
-- Name: vector; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;

--
-- Name: EXTENSION vector; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods';

--
-- Name: bump_skill_version(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.bump_skill_version() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: can_read_entity(text, uuid); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.can_read_entity(kind text, entity uuid) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$select case kind when 'knowledge' then exists (select 1 from knowledge x where x.id = entity) when 'skill' then exists (select 1 from skills x where x.id = entity) when 'task' then exists (select 1 from tasks x where x.id = entity) else false end$$;

--
-- Name: change_membership(uuid, text); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.change_membership(target uuid, new_role text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  cid uuid := fluxopus.company_id();
begin
  if cid is null then
    return 'forbidden';
  end if;
  if not exists (select 1 from public.members m where m.user_id = target and m.company_id = cid) then
    return 'not_found';
  end if;
  if not fluxopus.is_admin() then
    return 'forbidden';
  end if;
  return fluxopus.set_membership(cid, target, new_role);
end
$$;

--
-- Name: charge_tokens(jsonb, bigint, bigint); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.charge_tokens(caller jsonb, amount bigint, default_limit bigint) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  cid uuid;
begin
  perform set_config('request.jwt.claims', caller::text, true);
  cid := fluxopus.company_id();
  if cid is null then
    raise exception 'not a member of any company' using errcode = '42501';
  end if;
  if fluxopus.spend_tokens(cid, amount, default_limit) then
    return cid;
  end if;
  return null;
end
$$;

--
-- Name: cite_run(jsonb, uuid, jsonb); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.cite_run(caller jsonb, run uuid, run_citations jsonb) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
begin
  perform set_config('request.jwt.claims', caller::text, true);
  update public.skill_runs r set citations = run_citations
   where r.id = run and r.user_id = fluxopus.uid() and r.status in ('queued', 'running');
  return found;
end
$$;

--
-- Name: claims(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.claims() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ select nullif(current_setting('request.jwt.claims', true), '')::jsonb $$;

--
-- Name: company_id(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.company_id() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$ select company_id from public.members where user_id = fluxopus.uid() $$;

--
-- Name: connection_secrets(uuid); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.connection_secrets(connection uuid) RETURNS TABLE(access_token bytea, refresh_token bytea)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
  select c.access_token, c.refresh_token from public.connections c
   where c.id = connection and c.user_id = fluxopus.uid() and c.company_id = fluxopus.company_id()
$$;

--
-- Name: could_read(text, jsonb, uuid, boolean); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.could_read(kind text, old jsonb, me uuid, admin boolean) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
  select coalesce(case kind
    when 'task' then admin or (old ->> 'created_by')::uuid = me or (old ->> 'assignee_id')::uuid = me
    when 'knowledge' then old ->> 'visibility' = 'company' or (old ->> 'owner_id')::uuid = me
    when 'skill_run' then (old ->> 'user_id')::uuid = me or admin
    when 'tag' then true
    else false
  end, false)  -- a column compared with a NULL one (no assignee) is NULL, not false
$$;

--
-- Name: count_knowledge_bytes(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.count_knowledge_bytes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  company uuid;
  delta bigint := 0;
  quota bigint;
  used bigint;
begin
  if tg_op = 'DELETE' then
    company := old.company_id;
  else
    company := new.company_id;
    delta := octet_length(new.title) + octet_length(new.content);
  end if;
  if tg_op <> 'INSERT' then
    delta := delta - octet_length(old.title) - octet_length(old.content);
  end if;
  if delta = 0 then
    return null;
  end if;
  if delta < 0 then
    update public.knowledge_storage s set bytes = greatest(s.bytes + delta, 0) where s.company_id = company;
    return null;
  end if;
  select coalesce(c.storage_quota, nullif(current_setting('fluxopus.storage_quota', true), '')::bigint, 104857600)
    into quota from public.companies c where c.id = company;
  insert into public.knowledge_storage (company_id) values (company) on conflict do nothing;
  update public.knowledge_storage s set bytes = s.bytes + delta
   where s.company_id = company and s.bytes + delta <= quota;
  if not found then
    select s.bytes into used from public.knowledge_storage s where s.company_id = company;
    raise exception 'Knowledge storage quota exceeded: the company stores % of its % bytes, and this needs % more',
      used, quota, delta
      using errcode = 'FXQ01';
  end if;
  return null;
end
$$;

--
-- Name: delete_entity_tags(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.delete_entity_tags() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
begin
  delete from public.entity_tags where entity_type = tg_argv[0] and entity_id = old.id;
  return old;
end
$$;

--
-- Name: enqueue_embedding(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.enqueue_embedding() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
begin
  if tg_op = 'INSERT' or new.revision <> old.revision then
    insert into public.embedding_jobs (knowledge_id, company_id, revision) values (new.id, new.company_id, new.revision)
    on conflict (knowledge_id) do update
      set revision = excluded.revision, attempts = 0, run_after = now(), locked_until = null, last_error = null;
    perform pg_notify('fluxopus_embedding_jobs', new.id::text);
  end if;
  return null;
end
$$;

--
-- Name: entity_exists(text, uuid); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.entity_exists(kind text, entity uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $_$
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
$_$;

--
-- Name: finish_run(jsonb, uuid, text, text, integer, integer, text); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.finish_run(caller jsonb, run uuid, outcome text, run_output text, used_input integer, used_output integer, run_error text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  closed record;
begin
  perform set_config('request.jwt.claims', caller::text, true);
  if outcome not in ('succeeded', 'failed', 'cancelled') then
    raise exception 'invalid run outcome %', outcome using errcode = '22023';
  end if;
  update public.skill_runs r
     set status = outcome, output = run_output, input_tokens = used_input, output_tokens = used_output,
         error = run_error, finished_at = now()
   where r.id = run and r.user_id = fluxopus.uid() and r.status in ('queued', 'running')
  returning r.company_id, r.reserved_tokens, r.budget_period into closed;
  if not found then
    return false;
  end if;
  update public.token_usage u
     set reserved = greatest(u.reserved - closed.reserved_tokens, 0),
         used = u.used + coalesce(used_input, 0) + coalesce(used_output, 0)
   where u.company_id = closed.company_id and u.period_start = closed.budget_period;
  return true;
end
$$;

--
-- Name: invite_member(text, text, text, interval); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.invite_member(invitee text, invited_role text, secret_hash text, valid_for interval) RETURNS TABLE(outcome text, invitation_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  cid uuid := fluxopus.company_id();
  new_id uuid;
begin
  if cid is null or not fluxopus.is_admin() then
    return query select 'forbidden'::text, null::uuid;
    return;
  end if;
  if exists (select 1 from public.members m join public.users u on u.id = m.user_id
              where m.company_id = cid and lower(u.email) = lower(invitee)) then
    return query select 'member'::text, null::uuid;
    return;
  end if;
  insert into public.invitations (company_id, email, role, invited_by, token_hash, expires_at)
  values (cid, invitee, invited_role, fluxopus.uid(), secret_hash, now() + valid_for)
  on conflict (company_id, lower(email)) where accepted_at is null do update
     set role = excluded.role, invited_by = excluded.invited_by, token_hash = excluded.token_hash,
         expires_at = excluded.expires_at, created_at = now()
  returning id into new_id;
  return query select 'invited'::text, new_id;
end
$$;

--
-- Name: is_admin(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.is_admin() RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$ select coalesce((select role = 'admin' from public.members where user_id = fluxopus.uid()), false) $$;

--
-- Name: json_time(timestamp with time zone); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.json_time(t timestamp with time zone) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN ((to_char((t AT TIME ZONE 'UTC'::text), 'YYYY-MM-DD"T"HH24:MI:SS'::text) || CASE WHEN (((EXTRACT(microseconds FROM (t AT TIME ZONE 'UTC'::text)))::bigint % (1000000)::bigint) = 0) THEN ''::text ELSE to_char((t AT TIME ZONE 'UTC'::text), '.US'::text) END) || 'Z'::text);

--
-- Name: live_visibility(text[], bigint[]); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.live_visibility(identities text[], change_ids bigint[]) RETURNS TABLE(identity integer, change_id bigint, visible_now boolean, visible_before boolean)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: log_entity_tag_change(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.log_entity_tag_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: log_knowledge_change(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.log_knowledge_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: log_skill_run_change(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.log_skill_run_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: log_tag_change(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.log_tag_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: log_task_change(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.log_task_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: log_time_log_change(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.log_time_log_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: make_taggable(text, regclass); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.make_taggable(kind text, rel regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  cases text;
  table_name text := (select c.relname from pg_class c where c.oid = rel);
begin
  insert into public.taggable_types (entity_type, relation) values (kind, rel)
    on conflict (entity_type) do update set relation = excluded.relation;
  execute format('drop trigger if exists %I on %s', table_name || '_delete_tags', rel);
  execute format(
    'create trigger %I after delete on %s for each row execute function fluxopus.delete_entity_tags(%L)',
    table_name || '_delete_tags', rel, kind);
  select string_agg(format('when %L then exists (select 1 from %s x where x.id = entity)', t.entity_type, t.relation),
                    ' ' order by t.entity_type)
    into cases from public.taggable_types t;
  execute format(
    'create or replace function fluxopus.can_read_entity(kind text, entity uuid) returns boolean'
    ' language sql stable as %L',
    'select case kind ' || cases || ' else false end');
end
$$;

--
-- Name: matching_chunks(tsquery, integer); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.matching_chunks(query tsquery, pool integer) RETURNS TABLE(id bigint, score real)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
  select c.id, ts_rank(c.tsv, query) as score
    from public.knowledge_chunks c
   where c.company_id = fluxopus.company_id() and c.tsv @@ query
   order by score desc, c.id
   limit pool
$$;

--
-- Name: queue_embedding(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.queue_embedding() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
begin
  if tg_op = 'UPDATE' then
    if (new.title, new.content) is not distinct from (old.title, old.content) then
      new.updated_at := now();
      return new;
    end if;
    new.revision := old.revision + 1;
  end if;
  new.status := 'pending';
  new.error := null;
  new.updated_at := now();
  return new;
end
$$;

--
-- Name: record_change(uuid, text, text, uuid, jsonb, jsonb); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.record_change(company uuid, kind text, op text, entity uuid, old jsonb, detail jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: record_skill_version(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.record_skill_version() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

--
-- Name: record_tool_call(jsonb, uuid, jsonb); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.record_tool_call(caller jsonb, run uuid, call jsonb) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
begin
  perform set_config('request.jwt.claims', caller::text, true);
  update public.skill_runs r set tool_calls = r.tool_calls || jsonb_build_array(call)
   where r.id = run and r.user_id = fluxopus.uid() and r.status in ('queued', 'running');
  return found;
end
$$;

--
-- Name: reserve_tokens(bigint, bigint, interval); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.reserve_tokens(amount bigint, default_limit bigint, stale_after interval) RETURNS date
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  cid uuid := fluxopus.company_id();
  period date := date_trunc('month', now() at time zone 'utc')::date;
  budget bigint;
  stale record;
begin
  if cid is null then
    raise exception 'not a member of any company' using errcode = '42501';
  end if;
  for stale in
    update public.skill_runs r
       set status = 'failed', error = 'The run was interrupted: the server stopped before it finished',
           finished_at = now()
     where r.company_id = cid and r.status in ('queued', 'running') and r.started_at < now() - stale_after
    returning r.reserved_tokens, r.budget_period
  loop
    update public.token_usage u set reserved = greatest(u.reserved - stale.reserved_tokens, 0)
     where u.company_id = cid and u.period_start = stale.budget_period;
  end loop;
  select coalesce(c.monthly_token_budget, default_limit) into budget from public.companies c where c.id = cid;
  insert into public.token_usage (company_id, period_start) values (cid, period) on conflict do nothing;
  update public.token_usage u set reserved = u.reserved + amount
   where u.company_id = cid and u.period_start = period and u.used + u.reserved + amount <= budget;
  if found then
    return period;
  end if;
  return null;
end
$$;

--
-- Name: set_membership(uuid, uuid, text); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.set_membership(company uuid, target uuid, new_role text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  role_of_target text;
begin
  perform 1 from public.members m where m.company_id = company and m.role = 'admin' order by m.user_id for update;
  select m.role into role_of_target from public.members m where m.user_id = target and m.company_id = company;
  if role_of_target is null then
    return 'not_found';
  end if;
  if role_of_target = 'admin' and new_role is distinct from 'admin'
     and (select count(*) from public.members m where m.company_id = company and m.role = 'admin') <= 1 then
    return 'last_admin';
  end if;
  if new_role is null then
    delete from public.members m where m.user_id = target and m.company_id = company;
  else
    update public.members m set role = new_role where m.user_id = target and m.company_id = company;
  end if;
  return 'ok';
end
$$;

--
-- Name: set_task_assignee(uuid, uuid); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.set_task_assignee(task uuid, assignee uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
begin
  update public.tasks t set assignee_id = assignee
   where t.id = task
     and t.company_id = fluxopus.company_id()
     and (fluxopus.is_admin() or t.created_by = fluxopus.uid() or t.assignee_id = fluxopus.uid())
     and (assignee is null
          or exists (select 1 from public.members m where m.user_id = assignee and m.company_id = t.company_id));
  return found;
end
$$;

--
-- Name: spend_tokens(uuid, bigint, bigint); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.spend_tokens(company uuid, amount bigint, default_limit bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  period date := date_trunc('month', now() at time zone 'utc')::date;
  budget bigint;
begin
  select coalesce(c.monthly_token_budget, default_limit) into budget from public.companies c where c.id = company;
  if not found then
    return false;
  end if;
  insert into public.token_usage (company_id, period_start) values (company, period) on conflict do nothing;
  update public.token_usage u set used = u.used + amount
   where u.company_id = company and u.period_start = period and u.used + u.reserved + amount <= budget;
  return found;
end
$$;

--
-- Name: start_run(jsonb, uuid, integer, jsonb, text, text, bigint, bigint, interval); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.start_run(caller jsonb, skill uuid, skill_version integer, run_input jsonb, run_provider text, run_model text, reserve bigint, default_limit bigint, stale_after interval) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
declare
  period date;
  run uuid;
begin
  perform set_config('request.jwt.claims', caller::text, true);
  if not exists (select 1 from public.skills s
                  where s.id = skill and s.company_id = fluxopus.company_id()
                    and (s.owner_id = fluxopus.uid() or s.visibility = 'company')) then
    raise exception 'skill % is not visible to the caller', skill using errcode = '42501';
  end if;
  period := fluxopus.reserve_tokens(reserve, default_limit, stale_after);
  if period is null then
    return null;
  end if;
  insert into public.skill_runs (skill_id, version, input, provider, model, reserved_tokens, budget_period)
  values (skill, skill_version, run_input, run_provider, run_model, reserve, period)
  returning id into run;
  return run;
end
$$;

--
-- Name: take_oauth_state(text); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.take_oauth_state(hash text) RETURNS TABLE(user_id uuid, company_id uuid, provider text, code_verifier bytea, redirect_to text, expired boolean)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
  with swept as (
    delete from public.oauth_states s where s.expires_at < now() - interval '1 day' and s.state_hash <> hash
  )
  delete from public.oauth_states s where s.state_hash = hash
  returning s.user_id, s.company_id, s.provider, s.code_verifier, s.redirect_to, s.expires_at <= now()
$$;

--
-- Name: touch_updated_at(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
  new.updated_at := now();
  return new;
end
$$;

--
-- Name: uid(); Type: FUNCTION; Schema: fluxopus; Owner: -
--

CREATE FUNCTION fluxopus.uid() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ select nullif(fluxopus.claims() ->> 'sub', '')::uuid $$;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: auth_sessions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.auth_sessions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    refreshed_at timestamp with time zone,
    revoked_at timestamp with time zone,
    revoked_reason text,
    user_agent text,
    address text,
    not_after timestamp with time zone,
    CONSTRAINT auth_sessions_address_check CHECK ((char_length(address) <= 64)),
    CONSTRAINT auth_sessions_user_agent_check CHECK ((char_length(user_agent) <= 512))
);

--
-- Name: change_log; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.change_log (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    company_id uuid NOT NULL,
    kind text NOT NULL,
    op text NOT NULL,
    entity_id uuid NOT NULL,
    old jsonb,
    detail jsonb,
    CONSTRAINT change_log_kind_check CHECK ((kind = ANY (ARRAY['task'::text, 'knowledge'::text, 'skill_run'::text, 'tag'::text, 'entity_tag'::text]))),
    CONSTRAINT change_log_op_check CHECK ((op = ANY (ARRAY['created'::text, 'updated'::text, 'deleted'::text, 'status'::text, 'assigned'::text, 'unassigned'::text])))
);

--
-- Name: change_log_horizon; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.change_log_horizon (
    only_row boolean DEFAULT true NOT NULL,
    pruned_upto bigint DEFAULT 0 NOT NULL,
    CONSTRAINT change_log_horizon_only_row_check CHECK (only_row)
);

--
-- Name: change_log_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.change_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: change_log_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.change_log_id_seq OWNED BY public.change_log.id;

--
-- Name: companies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.companies (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    monthly_token_budget bigint,
    storage_quota bigint,
    tools_enabled boolean DEFAULT true NOT NULL,
    CONSTRAINT companies_monthly_token_budget_check CHECK ((monthly_token_budget >= 0)),
    CONSTRAINT companies_name_check CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200))),
    CONSTRAINT companies_storage_quota_check CHECK ((storage_quota >= 0))
);

--
-- Name: connections; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.connections (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    user_id uuid DEFAULT fluxopus.uid() NOT NULL,
    provider text NOT NULL,
    account_id text,
    account text,
    scopes text[] DEFAULT '{}'::text[] NOT NULL,
    status text DEFAULT 'connected'::text NOT NULL,
    error text,
    access_token bytea NOT NULL,
    refresh_token bytea,
    has_refresh_token boolean GENERATED ALWAYS AS ((refresh_token IS NOT NULL)) STORED,
    token_type text,
    expires_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT connections_account_check CHECK ((char_length(account) <= 500)),
    CONSTRAINT connections_account_id_check CHECK ((char_length(account_id) <= 500)),
    CONSTRAINT connections_error_check CHECK ((char_length(error) <= 1000)),
    CONSTRAINT connections_provider_check CHECK ((provider ~ '^[a-z][a-z0-9_-]{0,39}$'::text)),
    CONSTRAINT connections_status_check CHECK ((status = ANY (ARRAY['connected'::text, 'revoked'::text, 'error'::text]))),
    CONSTRAINT connections_token_type_check CHECK ((char_length(token_type) <= 40))
);

--
-- Name: embedding_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.embedding_jobs (
    knowledge_id uuid NOT NULL,
    revision integer NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    run_after timestamp with time zone DEFAULT now() NOT NULL,
    locked_until timestamp with time zone,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    company_id uuid NOT NULL
);

--
-- Name: embedding_turns; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.embedding_turns (
    company_id uuid NOT NULL,
    served_at timestamp with time zone NOT NULL
);

--
-- Name: entity_tags; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.entity_tags (
    tag_id uuid NOT NULL,
    entity_type text NOT NULL,
    entity_id uuid NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: fluxopus_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.fluxopus_migrations (
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    checksum text
);

--
-- Name: invitations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.invitations (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    email text NOT NULL,
    role text DEFAULT 'member'::text NOT NULL,
    invited_by uuid DEFAULT fluxopus.uid() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    accepted_at timestamp with time zone,
    token_hash text,
    expires_at timestamp with time zone DEFAULT (now() + '7 days'::interval) NOT NULL,
    accepted_by uuid,
    CONSTRAINT invitations_email_check CHECK (((char_length(email) >= 3) AND (char_length(email) <= 320))),
    CONSTRAINT invitations_role_check CHECK ((role = ANY (ARRAY['admin'::text, 'member'::text]))),
    CONSTRAINT invitations_token_hash_check CHECK ((char_length(token_hash) = 64))
);

--
-- Name: knowledge; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.knowledge (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    owner_id uuid DEFAULT fluxopus.uid() NOT NULL,
    title text NOT NULL,
    content text NOT NULL,
    source_url text,
    visibility text DEFAULT 'company'::text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    error text,
    revision integer DEFAULT 1 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT knowledge_content_check CHECK ((octet_length(content) <= 1048576)),
    CONSTRAINT knowledge_source_url_check CHECK ((char_length(source_url) <= 2048)),
    CONSTRAINT knowledge_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'indexed'::text, 'failed'::text]))),
    CONSTRAINT knowledge_title_check CHECK (((char_length(title) >= 1) AND (char_length(title) <= 500))),
    CONSTRAINT knowledge_visibility_check CHECK ((visibility = ANY (ARRAY['company'::text, 'private'::text])))
);

--
-- Name: knowledge_chunks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.knowledge_chunks (
    id bigint NOT NULL,
    knowledge_id uuid NOT NULL,
    company_id uuid NOT NULL,
    "position" integer NOT NULL,
    content text NOT NULL,
    tsv tsvector NOT NULL,
    embedding public.vector(384) NOT NULL,
    model text NOT NULL
);

--
-- Name: knowledge_chunks_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.knowledge_chunks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.knowledge_chunks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: knowledge_storage; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.knowledge_storage (
    company_id uuid NOT NULL,
    bytes bigint DEFAULT 0 NOT NULL,
    CONSTRAINT knowledge_storage_bytes_check CHECK ((bytes >= 0))
);

--
-- Name: members; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.members (
    user_id uuid NOT NULL,
    company_id uuid NOT NULL,
    role text DEFAULT 'member'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT members_role_check CHECK ((role = ANY (ARRAY['admin'::text, 'member'::text])))
);

--
-- Name: oauth_states; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.oauth_states (
    state_hash text NOT NULL,
    user_id uuid DEFAULT fluxopus.uid() NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    provider text NOT NULL,
    code_verifier bytea NOT NULL,
    redirect_to text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone DEFAULT (now() + '00:10:00'::interval) NOT NULL,
    CONSTRAINT oauth_states_redirect_to_check CHECK ((char_length(redirect_to) <= 2048)),
    CONSTRAINT oauth_states_state_hash_check CHECK ((char_length(state_hash) = 64))
);

--
-- Name: refresh_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.refresh_tokens (
    token_hash text NOT NULL,
    session_id uuid NOT NULL,
    parent_hash text,
    used_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT refresh_tokens_token_hash_check CHECK ((char_length(token_hash) = 64))
);

--
-- Name: sign_in_attempts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sign_in_attempts (
    id bigint NOT NULL,
    email text NOT NULL,
    address text NOT NULL,
    succeeded boolean NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: sign_in_attempts_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.sign_in_attempts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.sign_in_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: sign_ups; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sign_ups (
    id bigint NOT NULL,
    address text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT sign_ups_address_check CHECK ((char_length(address) <= 64))
);

--
-- Name: sign_ups_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.sign_ups ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.sign_ups_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: skill_runs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.skill_runs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    skill_id uuid NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    user_id uuid DEFAULT fluxopus.uid() NOT NULL,
    version integer NOT NULL,
    status text DEFAULT 'running'::text NOT NULL,
    input jsonb DEFAULT '{}'::jsonb NOT NULL,
    output text,
    provider text NOT NULL,
    model text NOT NULL,
    input_tokens integer,
    output_tokens integer,
    error text,
    reserved_tokens bigint DEFAULT 0 NOT NULL,
    budget_period date,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone DEFAULT now(),
    finished_at timestamp with time zone,
    citations jsonb DEFAULT '[]'::jsonb NOT NULL,
    tool_calls jsonb DEFAULT '[]'::jsonb NOT NULL,
    CONSTRAINT skill_runs_citations_check CHECK ((jsonb_typeof(citations) = 'array'::text)),
    CONSTRAINT skill_runs_reserved_tokens_check CHECK ((reserved_tokens >= 0)),
    CONSTRAINT skill_runs_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'running'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text])))
);

--
-- Name: skill_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.skill_versions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    skill_id uuid NOT NULL,
    company_id uuid NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    description text,
    instructions text NOT NULL,
    input_schema jsonb,
    provider text,
    model text,
    temperature double precision,
    max_tokens integer NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    knowledge jsonb,
    tools jsonb DEFAULT '[]'::jsonb NOT NULL
);

--
-- Name: skills; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.skills (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    owner_id uuid DEFAULT fluxopus.uid() NOT NULL,
    name text NOT NULL,
    description text,
    instructions text NOT NULL,
    input_schema jsonb,
    provider text,
    model text,
    temperature double precision,
    max_tokens integer DEFAULT 1024 NOT NULL,
    visibility text DEFAULT 'private'::text NOT NULL,
    version integer DEFAULT 1 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    knowledge jsonb,
    tools jsonb DEFAULT '[]'::jsonb NOT NULL,
    CONSTRAINT skills_description_check CHECK ((char_length(description) <= 5000)),
    CONSTRAINT skills_input_schema_check CHECK (((input_schema IS NULL) OR (jsonb_typeof(input_schema) = 'object'::text))),
    CONSTRAINT skills_instructions_check CHECK (((char_length(instructions) >= 1) AND (char_length(instructions) <= 100000))),
    CONSTRAINT skills_knowledge_check CHECK (((knowledge IS NULL) OR (jsonb_typeof(knowledge) = 'object'::text))),
    CONSTRAINT skills_max_tokens_check CHECK (((max_tokens >= 1) AND (max_tokens <= 32000))),
    CONSTRAINT skills_model_check CHECK (((char_length(model) >= 1) AND (char_length(model) <= 200))),
    CONSTRAINT skills_name_check CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200))),
    CONSTRAINT skills_provider_check CHECK ((provider = ANY (ARRAY['openai'::text, 'anthropic'::text, 'echo'::text]))),
    CONSTRAINT skills_temperature_check CHECK (((temperature >= (0)::double precision) AND (temperature <= (2)::double precision))),
    CONSTRAINT skills_tools_check CHECK (((jsonb_typeof(tools) = 'array'::text) AND (jsonb_array_length(tools) <= 20))),
    CONSTRAINT skills_visibility_check CHECK ((visibility = ANY (ARRAY['private'::text, 'company'::text])))
);

--
-- Name: taggable_types; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.taggable_types (
    entity_type text NOT NULL,
    relation regclass NOT NULL,
    CONSTRAINT taggable_types_entity_type_check CHECK ((entity_type ~ '^[a-z][a-z_]*$'::text))
);

--
-- Name: tags; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tags (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    name text NOT NULL,
    color text,
    created_by uuid DEFAULT fluxopus.uid() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tags_color_check CHECK ((color ~ '^#[0-9A-Fa-f]{6}$'::text)),
    CONSTRAINT tags_name_check CHECK (((char_length(name) >= 1) AND (char_length(name) <= 50)))
);

--
-- Name: tasks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tasks (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    title text NOT NULL,
    description text,
    status text DEFAULT 'todo'::text NOT NULL,
    priority text DEFAULT 'medium'::text NOT NULL,
    due_date date,
    assignee_id uuid,
    created_by uuid DEFAULT fluxopus.uid() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tasks_description_check CHECK ((char_length(description) <= 20000)),
    CONSTRAINT tasks_priority_check CHECK ((priority = ANY (ARRAY['low'::text, 'medium'::text, 'high'::text, 'urgent'::text]))),
    CONSTRAINT tasks_status_check CHECK ((status = ANY (ARRAY['todo'::text, 'in_progress'::text, 'done'::text, 'cancelled'::text]))),
    CONSTRAINT tasks_title_check CHECK (((char_length(title) >= 1) AND (char_length(title) <= 500)))
);

--
-- Name: time_logs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.time_logs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    task_id uuid NOT NULL,
    company_id uuid DEFAULT fluxopus.company_id() NOT NULL,
    user_id uuid DEFAULT fluxopus.uid() NOT NULL,
    minutes integer NOT NULL,
    note text,
    spent_on date DEFAULT CURRENT_DATE NOT NULL,
    billable boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT time_logs_minutes_check CHECK (((minutes >= 1) AND (minutes <= 1440))),
    CONSTRAINT time_logs_note_check CHECK ((char_length(note) <= 2000))
);

--
-- Name: token_usage; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.token_usage (
    company_id uuid NOT NULL,
    period_start date NOT NULL,
    used bigint DEFAULT 0 NOT NULL,
    reserved bigint DEFAULT 0 NOT NULL,
    CONSTRAINT token_usage_reserved_check CHECK ((reserved >= 0)),
    CONSTRAINT token_usage_used_check CHECK ((used >= 0))
);

--
-- Name: users; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.users (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    email text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    password_hash text,
    email_confirmed_at timestamp with time zone,
    last_sign_in_at timestamp with time zone,
    user_metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    confirmation_token_hash text,
    confirmation_sent_at timestamp with time zone,
    CONSTRAINT users_confirmation_token_hash_check CHECK ((char_length(confirmation_token_hash) = 64)),
    CONSTRAINT users_email_check CHECK (((char_length(email) >= 3) AND (char_length(email) <= 320)))
);

--
-- Name: auth_sessions auth_sessions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.auth_sessions
    ADD CONSTRAINT auth_sessions_pkey PRIMARY KEY (id);

--
-- Name: change_log_horizon change_log_horizon_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.change_log_horizon
    ADD CONSTRAINT change_log_horizon_pkey PRIMARY KEY (only_row);

--
-- Name: change_log change_log_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.change_log
    ADD CONSTRAINT change_log_pkey PRIMARY KEY (id);

--
-- Name: companies companies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.companies
    ADD CONSTRAINT companies_pkey PRIMARY KEY (id);

--
-- Name: connections connections_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.connections
    ADD CONSTRAINT connections_pkey PRIMARY KEY (id);

--
-- Name: connections connections_user_id_provider_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.connections
    ADD CONSTRAINT connections_user_id_provider_key UNIQUE (user_id, provider);

--
-- Name: embedding_jobs embedding_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.embedding_jobs
    ADD CONSTRAINT embedding_jobs_pkey PRIMARY KEY (knowledge_id);

--
-- Name: embedding_turns embedding_turns_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.embedding_turns
    ADD CONSTRAINT embedding_turns_pkey PRIMARY KEY (company_id);

--
-- Name: entity_tags entity_tags_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.entity_tags
    ADD CONSTRAINT entity_tags_pkey PRIMARY KEY (tag_id, entity_type, entity_id);

--
-- Name: fluxopus_migrations fluxopus_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.fluxopus_migrations
    ADD CONSTRAINT fluxopus_migrations_pkey PRIMARY KEY (name);

--
-- Name: invitations invitations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.invitations
    ADD CONSTRAINT invitations_pkey PRIMARY KEY (id);

--
-- Name: knowledge_chunks knowledge_chunks_knowledge_id_position_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge_chunks
    ADD CONSTRAINT knowledge_chunks_knowledge_id_position_key UNIQUE (knowledge_id, "position");

--
-- Name: knowledge_chunks knowledge_chunks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge_chunks
    ADD CONSTRAINT knowledge_chunks_pkey PRIMARY KEY (id);

--
-- Name: knowledge knowledge_content_not_empty; Type: CHECK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE public.knowledge
    ADD CONSTRAINT knowledge_content_not_empty CHECK ((char_length(content) >= 1)) NOT VALID;

--
-- Name: knowledge knowledge_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge
    ADD CONSTRAINT knowledge_pkey PRIMARY KEY (id);

--
-- Name: knowledge_storage knowledge_storage_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge_storage
    ADD CONSTRAINT knowledge_storage_pkey PRIMARY KEY (company_id);

--
-- Name: members members_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_pkey PRIMARY KEY (user_id);

--
-- Name: oauth_states oauth_states_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.oauth_states
    ADD CONSTRAINT oauth_states_pkey PRIMARY KEY (state_hash);

--
-- Name: refresh_tokens refresh_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.refresh_tokens
    ADD CONSTRAINT refresh_tokens_pkey PRIMARY KEY (token_hash);

--
-- Name: sign_in_attempts sign_in_attempts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sign_in_attempts
    ADD CONSTRAINT sign_in_attempts_pkey PRIMARY KEY (id);

--
-- Name: sign_ups sign_ups_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sign_ups
    ADD CONSTRAINT sign_ups_pkey PRIMARY KEY (id);

--
-- Name: skill_runs skill_runs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_runs
    ADD CONSTRAINT skill_runs_pkey PRIMARY KEY (id);

--
-- Name: skill_versions skill_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_versions
    ADD CONSTRAINT skill_versions_pkey PRIMARY KEY (id);

--
-- Name: skill_versions skill_versions_skill_id_version_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_versions
    ADD CONSTRAINT skill_versions_skill_id_version_key UNIQUE (skill_id, version);

--
-- Name: skills skills_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skills
    ADD CONSTRAINT skills_pkey PRIMARY KEY (id);

--
-- Name: taggable_types taggable_types_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.taggable_types
    ADD CONSTRAINT taggable_types_pkey PRIMARY KEY (entity_type);

--
-- Name: taggable_types taggable_types_relation_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.taggable_types
    ADD CONSTRAINT taggable_types_relation_key UNIQUE (relation);

--
-- Name: tags tags_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tags
    ADD CONSTRAINT tags_pkey PRIMARY KEY (id);

--
-- Name: tasks tasks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_pkey PRIMARY KEY (id);

--
-- Name: time_logs time_logs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.time_logs
    ADD CONSTRAINT time_logs_pkey PRIMARY KEY (id);

--
-- Name: token_usage token_usage_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.token_usage
    ADD CONSTRAINT token_usage_pkey PRIMARY KEY (company_id, period_start);

--
-- Name: users users_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

--
-- Name: auth_sessions_user_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX auth_sessions_user_idx ON public.auth_sessions USING btree (user_id);

--
-- Name: change_log_at_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX change_log_at_idx ON public.change_log USING btree (at);

--
-- Name: companies_name_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX companies_name_key ON public.companies USING btree (lower(name));

--
-- Name: connections_company_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX connections_company_idx ON public.connections USING btree (company_id, created_at DESC);

--
-- Name: embedding_jobs_company_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX embedding_jobs_company_idx ON public.embedding_jobs USING btree (company_id, run_after);

--
-- Name: embedding_jobs_due_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX embedding_jobs_due_idx ON public.embedding_jobs USING btree (run_after);

--
-- Name: entity_tags_entity_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX entity_tags_entity_idx ON public.entity_tags USING btree (entity_type, entity_id);

--
-- Name: invitations_company_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX invitations_company_idx ON public.invitations USING btree (company_id, created_at DESC);

--
-- Name: invitations_pending_email_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX invitations_pending_email_key ON public.invitations USING btree (company_id, lower(email)) WHERE (accepted_at IS NULL);

--
-- Name: invitations_token_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX invitations_token_key ON public.invitations USING btree (token_hash);

--
-- Name: knowledge_chunks_embedding_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX knowledge_chunks_embedding_idx ON public.knowledge_chunks USING hnsw (embedding public.vector_cosine_ops);

--
-- Name: knowledge_chunks_model_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX knowledge_chunks_model_idx ON public.knowledge_chunks USING btree (model);

--
-- Name: knowledge_chunks_tsv_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX knowledge_chunks_tsv_idx ON public.knowledge_chunks USING gin (tsv);

--
-- Name: knowledge_company_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX knowledge_company_idx ON public.knowledge USING btree (company_id, created_at DESC);

--
-- Name: knowledge_owner_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX knowledge_owner_idx ON public.knowledge USING btree (owner_id);

--
-- Name: members_company_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX members_company_id_idx ON public.members USING btree (company_id);

--
-- Name: oauth_states_expires_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX oauth_states_expires_idx ON public.oauth_states USING btree (expires_at);

--
-- Name: oauth_states_user_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX oauth_states_user_idx ON public.oauth_states USING btree (user_id, created_at DESC);

--
-- Name: refresh_tokens_session_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX refresh_tokens_session_idx ON public.refresh_tokens USING btree (session_id);

--
-- Name: sign_in_attempts_address_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX sign_in_attempts_address_idx ON public.sign_in_attempts USING btree (address, at DESC);

--
-- Name: sign_in_attempts_email_address_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX sign_in_attempts_email_address_idx ON public.sign_in_attempts USING btree (lower(email), address, at DESC);

--
-- Name: sign_in_attempts_email_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX sign_in_attempts_email_idx ON public.sign_in_attempts USING btree (lower(email), at DESC);

--
-- Name: sign_ups_address_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX sign_ups_address_idx ON public.sign_ups USING btree (address, at DESC);

--
-- Name: skill_runs_open_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX skill_runs_open_idx ON public.skill_runs USING btree (company_id, started_at) WHERE (status = ANY (ARRAY['queued'::text, 'running'::text]));

--
-- Name: skill_runs_skill_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX skill_runs_skill_idx ON public.skill_runs USING btree (skill_id, created_at DESC);

--
-- Name: skill_runs_user_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX skill_runs_user_idx ON public.skill_runs USING btree (user_id);

--
-- Name: skills_company_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX skills_company_idx ON public.skills USING btree (company_id, created_at DESC);

--
-- Name: skills_owner_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX skills_owner_idx ON public.skills USING btree (owner_id);

--
-- Name: tags_company_name_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX tags_company_name_key ON public.tags USING btree (company_id, lower(name));

--
-- Name: tasks_assignee_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_assignee_id_idx ON public.tasks USING btree (assignee_id);

--
-- Name: tasks_company_created_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_company_created_idx ON public.tasks USING btree (company_id, created_at DESC);

--
-- Name: tasks_created_by_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_created_by_idx ON public.tasks USING btree (created_by);

--
-- Name: tasks_visibility_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tasks_visibility_idx ON public.tasks USING btree (company_id, created_by, assignee_id);

--
-- Name: time_logs_task_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX time_logs_task_id_idx ON public.time_logs USING btree (task_id, created_at DESC);

--
-- Name: time_logs_user_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX time_logs_user_id_idx ON public.time_logs USING btree (user_id);

--
-- Name: users_confirmation_token_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX users_confirmation_token_key ON public.users USING btree (confirmation_token_hash);

--
-- Name: users_email_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX users_email_key ON public.users USING btree (lower(email));

--
-- Name: connections connections_touch; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER connections_touch BEFORE UPDATE ON public.connections FOR EACH ROW EXECUTE FUNCTION fluxopus.touch_updated_at();

--
-- Name: entity_tags entity_tags_live; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER entity_tags_live AFTER INSERT OR DELETE ON public.entity_tags DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_entity_tag_change();

--
-- Name: knowledge knowledge_count_bytes; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER knowledge_count_bytes AFTER INSERT OR DELETE OR UPDATE OF title, content ON public.knowledge FOR EACH ROW EXECUTE FUNCTION fluxopus.count_knowledge_bytes();

--
-- Name: knowledge knowledge_delete_tags; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER knowledge_delete_tags AFTER DELETE ON public.knowledge FOR EACH ROW EXECUTE FUNCTION fluxopus.delete_entity_tags('knowledge');

--
-- Name: knowledge knowledge_enqueue; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER knowledge_enqueue AFTER INSERT OR UPDATE ON public.knowledge FOR EACH ROW EXECUTE FUNCTION fluxopus.enqueue_embedding();

--
-- Name: knowledge knowledge_live; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER knowledge_live AFTER INSERT OR DELETE ON public.knowledge DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_knowledge_change();

--
-- Name: knowledge knowledge_live_update; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER knowledge_live_update AFTER UPDATE OF title, content, source_url, visibility, status, error, owner_id ON public.knowledge DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_knowledge_change();

--
-- Name: knowledge knowledge_queue; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER knowledge_queue BEFORE INSERT OR UPDATE ON public.knowledge FOR EACH ROW EXECUTE FUNCTION fluxopus.queue_embedding();

--
-- Name: skill_runs skill_runs_live; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER skill_runs_live AFTER INSERT OR DELETE ON public.skill_runs DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_skill_run_change();

--
-- Name: skill_runs skill_runs_live_update; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER skill_runs_live_update AFTER UPDATE OF status, output, error, input_tokens, output_tokens, finished_at ON public.skill_runs DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_skill_run_change();

--
-- Name: skills skills_bump_version; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER skills_bump_version BEFORE UPDATE ON public.skills FOR EACH ROW EXECUTE FUNCTION fluxopus.bump_skill_version();

--
-- Name: skills skills_delete_tags; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER skills_delete_tags AFTER DELETE ON public.skills FOR EACH ROW EXECUTE FUNCTION fluxopus.delete_entity_tags('skill');

--
-- Name: skills skills_record_version; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER skills_record_version AFTER INSERT OR UPDATE ON public.skills FOR EACH ROW EXECUTE FUNCTION fluxopus.record_skill_version();

--
-- Name: tags tags_live; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER tags_live AFTER INSERT OR DELETE OR UPDATE ON public.tags DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_tag_change();

--
-- Name: tasks tasks_delete_tags; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER tasks_delete_tags AFTER DELETE ON public.tasks FOR EACH ROW EXECUTE FUNCTION fluxopus.delete_entity_tags('task');

--
-- Name: tasks tasks_live; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER tasks_live AFTER INSERT OR DELETE OR UPDATE ON public.tasks DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_task_change();

--
-- Name: tasks tasks_touch; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER tasks_touch BEFORE UPDATE ON public.tasks FOR EACH ROW EXECUTE FUNCTION fluxopus.touch_updated_at();

--
-- Name: time_logs time_logs_live; Type: TRIGGER; Schema: public; Owner: -
--

CREATE CONSTRAINT TRIGGER time_logs_live AFTER INSERT OR DELETE OR UPDATE ON public.time_logs DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fluxopus.log_time_log_change();

--
-- Name: auth_sessions auth_sessions_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.auth_sessions
    ADD CONSTRAINT auth_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

--
-- Name: connections connections_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.connections
    ADD CONSTRAINT connections_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: connections connections_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.connections
    ADD CONSTRAINT connections_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

--
-- Name: embedding_jobs embedding_jobs_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.embedding_jobs
    ADD CONSTRAINT embedding_jobs_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: embedding_jobs embedding_jobs_knowledge_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.embedding_jobs
    ADD CONSTRAINT embedding_jobs_knowledge_id_fkey FOREIGN KEY (knowledge_id) REFERENCES public.knowledge(id) ON DELETE CASCADE;

--
-- Name: embedding_turns embedding_turns_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.embedding_turns
    ADD CONSTRAINT embedding_turns_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: entity_tags entity_tags_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.entity_tags
    ADD CONSTRAINT entity_tags_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: entity_tags entity_tags_entity_type_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.entity_tags
    ADD CONSTRAINT entity_tags_entity_type_fkey FOREIGN KEY (entity_type) REFERENCES public.taggable_types(entity_type);

--
-- Name: entity_tags entity_tags_tag_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.entity_tags
    ADD CONSTRAINT entity_tags_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES public.tags(id) ON DELETE CASCADE;

--
-- Name: invitations invitations_accepted_by_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.invitations
    ADD CONSTRAINT invitations_accepted_by_fkey FOREIGN KEY (accepted_by) REFERENCES public.users(id) ON DELETE SET NULL;

--
-- Name: invitations invitations_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.invitations
    ADD CONSTRAINT invitations_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: invitations invitations_invited_by_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.invitations
    ADD CONSTRAINT invitations_invited_by_fkey FOREIGN KEY (invited_by) REFERENCES public.users(id) ON DELETE CASCADE;

--
-- Name: knowledge_chunks knowledge_chunks_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge_chunks
    ADD CONSTRAINT knowledge_chunks_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: knowledge_chunks knowledge_chunks_knowledge_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge_chunks
    ADD CONSTRAINT knowledge_chunks_knowledge_id_fkey FOREIGN KEY (knowledge_id) REFERENCES public.knowledge(id) ON DELETE CASCADE;

--
-- Name: knowledge knowledge_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge
    ADD CONSTRAINT knowledge_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: knowledge knowledge_owner_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge
    ADD CONSTRAINT knowledge_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES public.users(id);

--
-- Name: knowledge_storage knowledge_storage_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.knowledge_storage
    ADD CONSTRAINT knowledge_storage_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: members members_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: members members_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

--
-- Name: oauth_states oauth_states_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.oauth_states
    ADD CONSTRAINT oauth_states_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: oauth_states oauth_states_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.oauth_states
    ADD CONSTRAINT oauth_states_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

--
-- Name: refresh_tokens refresh_tokens_session_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.refresh_tokens
    ADD CONSTRAINT refresh_tokens_session_id_fkey FOREIGN KEY (session_id) REFERENCES public.auth_sessions(id) ON DELETE CASCADE;

--
-- Name: skill_runs skill_runs_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_runs
    ADD CONSTRAINT skill_runs_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: skill_runs skill_runs_skill_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_runs
    ADD CONSTRAINT skill_runs_skill_id_fkey FOREIGN KEY (skill_id) REFERENCES public.skills(id) ON DELETE CASCADE;

--
-- Name: skill_runs skill_runs_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_runs
    ADD CONSTRAINT skill_runs_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id);

--
-- Name: skill_versions skill_versions_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_versions
    ADD CONSTRAINT skill_versions_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: skill_versions skill_versions_created_by_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_versions
    ADD CONSTRAINT skill_versions_created_by_fkey FOREIGN KEY (created_by) REFERENCES public.users(id);

--
-- Name: skill_versions skill_versions_skill_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skill_versions
    ADD CONSTRAINT skill_versions_skill_id_fkey FOREIGN KEY (skill_id) REFERENCES public.skills(id) ON DELETE CASCADE;

--
-- Name: skills skills_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skills
    ADD CONSTRAINT skills_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: skills skills_owner_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skills
    ADD CONSTRAINT skills_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES public.users(id);

--
-- Name: tags tags_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tags
    ADD CONSTRAINT tags_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: tags tags_created_by_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tags
    ADD CONSTRAINT tags_created_by_fkey FOREIGN KEY (created_by) REFERENCES public.users(id);

--
-- Name: tasks tasks_assignee_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_assignee_id_fkey FOREIGN KEY (assignee_id) REFERENCES public.users(id) ON DELETE SET NULL;

--
-- Name: tasks tasks_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: tasks tasks_created_by_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_created_by_fkey FOREIGN KEY (created_by) REFERENCES public.users(id);

--
-- Name: time_logs time_logs_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.time_logs
    ADD CONSTRAINT time_logs_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: time_logs time_logs_task_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.time_logs
    ADD CONSTRAINT time_logs_task_id_fkey FOREIGN KEY (task_id) REFERENCES public.tasks(id) ON DELETE CASCADE;

--
-- Name: time_logs time_logs_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.time_logs
    ADD CONSTRAINT time_logs_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id);

--
-- Name: token_usage token_usage_company_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.token_usage
    ADD CONSTRAINT token_usage_company_id_fkey FOREIGN KEY (company_id) REFERENCES public.companies(id) ON DELETE CASCADE;

--
-- Name: auth_sessions; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.auth_sessions ENABLE ROW LEVEL SECURITY;

--
-- Name: change_log; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.change_log ENABLE ROW LEVEL SECURITY;

--
-- Name: change_log_horizon; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.change_log_horizon ENABLE ROW LEVEL SECURITY;

--
-- Name: change_log change_log_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY change_log_read ON public.change_log FOR SELECT TO authenticated USING ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: companies; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.companies ENABLE ROW LEVEL SECURITY;

--
-- Name: companies companies_admin_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY companies_admin_update ON public.companies FOR UPDATE TO authenticated USING (((id = ( SELECT fluxopus.company_id() AS company_id)) AND ( SELECT fluxopus.is_admin() AS is_admin))) WITH CHECK ((id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: companies companies_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY companies_read ON public.companies FOR SELECT TO authenticated USING ((id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: connections; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.connections ENABLE ROW LEVEL SECURITY;

--
-- Name: connections connections_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY connections_delete ON public.connections FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (user_id = ( SELECT fluxopus.uid() AS uid))));

--
-- Name: connections connections_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY connections_insert ON public.connections FOR INSERT TO authenticated WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (user_id = ( SELECT fluxopus.uid() AS uid))));

--
-- Name: connections connections_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY connections_read ON public.connections FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((user_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin))));

--
-- Name: connections connections_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY connections_update ON public.connections FOR UPDATE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (user_id = ( SELECT fluxopus.uid() AS uid)))) WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (user_id = ( SELECT fluxopus.uid() AS uid))));

--
-- Name: embedding_jobs; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.embedding_jobs ENABLE ROW LEVEL SECURITY;

--
-- Name: embedding_turns; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.embedding_turns ENABLE ROW LEVEL SECURITY;

--
-- Name: entity_tags; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.entity_tags ENABLE ROW LEVEL SECURITY;

--
-- Name: entity_tags entity_tags_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY entity_tags_delete ON public.entity_tags FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND fluxopus.can_read_entity(entity_type, entity_id)));

--
-- Name: entity_tags entity_tags_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY entity_tags_insert ON public.entity_tags FOR INSERT TO authenticated WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND fluxopus.can_read_entity(entity_type, entity_id) AND (EXISTS ( SELECT 1
   FROM public.tags g
  WHERE (g.id = entity_tags.tag_id)))));

--
-- Name: entity_tags entity_tags_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY entity_tags_read ON public.entity_tags FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND fluxopus.can_read_entity(entity_type, entity_id)));

--
-- Name: invitations; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.invitations ENABLE ROW LEVEL SECURITY;

--
-- Name: invitations invitations_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY invitations_delete ON public.invitations FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ( SELECT fluxopus.is_admin() AS is_admin)));

--
-- Name: invitations invitations_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY invitations_read ON public.invitations FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ( SELECT fluxopus.is_admin() AS is_admin)));

--
-- Name: knowledge; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.knowledge ENABLE ROW LEVEL SECURITY;

--
-- Name: knowledge_chunks; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.knowledge_chunks ENABLE ROW LEVEL SECURITY;

--
-- Name: knowledge_chunks knowledge_chunks_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY knowledge_chunks_read ON public.knowledge_chunks FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (EXISTS ( SELECT 1
   FROM public.knowledge k
  WHERE (k.id = knowledge_chunks.knowledge_id)))));

--
-- Name: knowledge knowledge_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY knowledge_delete ON public.knowledge FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((owner_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin))));

--
-- Name: knowledge knowledge_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY knowledge_insert ON public.knowledge FOR INSERT TO authenticated WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (owner_id = ( SELECT fluxopus.uid() AS uid))));

--
-- Name: knowledge knowledge_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY knowledge_read ON public.knowledge FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((visibility = 'company'::text) OR (owner_id = ( SELECT fluxopus.uid() AS uid)))));

--
-- Name: knowledge_storage; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.knowledge_storage ENABLE ROW LEVEL SECURITY;

--
-- Name: knowledge knowledge_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY knowledge_update ON public.knowledge FOR UPDATE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((owner_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin)))) WITH CHECK ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: members; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.members ENABLE ROW LEVEL SECURITY;

--
-- Name: members members_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY members_read ON public.members FOR SELECT TO authenticated USING ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: oauth_states; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.oauth_states ENABLE ROW LEVEL SECURITY;

--
-- Name: oauth_states oauth_states_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY oauth_states_delete ON public.oauth_states FOR DELETE TO authenticated USING ((user_id = ( SELECT fluxopus.uid() AS uid)));

--
-- Name: oauth_states oauth_states_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY oauth_states_insert ON public.oauth_states FOR INSERT TO authenticated WITH CHECK (((user_id = ( SELECT fluxopus.uid() AS uid)) AND (company_id = ( SELECT fluxopus.company_id() AS company_id))));

--
-- Name: oauth_states oauth_states_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY oauth_states_read ON public.oauth_states FOR SELECT TO authenticated USING ((user_id = ( SELECT fluxopus.uid() AS uid)));

--
-- Name: refresh_tokens; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.refresh_tokens ENABLE ROW LEVEL SECURITY;

--
-- Name: sign_in_attempts; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.sign_in_attempts ENABLE ROW LEVEL SECURITY;

--
-- Name: sign_ups; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.sign_ups ENABLE ROW LEVEL SECURITY;

--
-- Name: skill_runs; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.skill_runs ENABLE ROW LEVEL SECURITY;

--
-- Name: skill_runs skill_runs_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY skill_runs_read ON public.skill_runs FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((user_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin))));

--
-- Name: skill_versions; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.skill_versions ENABLE ROW LEVEL SECURITY;

--
-- Name: skill_versions skill_versions_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY skill_versions_read ON public.skill_versions FOR SELECT TO authenticated USING ((EXISTS ( SELECT 1
   FROM public.skills s
  WHERE (s.id = skill_versions.skill_id))));

--
-- Name: skills; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.skills ENABLE ROW LEVEL SECURITY;

--
-- Name: skills skills_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY skills_delete ON public.skills FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((owner_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin))));

--
-- Name: skills skills_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY skills_insert ON public.skills FOR INSERT TO authenticated WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (owner_id = ( SELECT fluxopus.uid() AS uid))));

--
-- Name: skills skills_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY skills_read ON public.skills FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((owner_id = ( SELECT fluxopus.uid() AS uid)) OR (visibility = 'company'::text))));

--
-- Name: skills skills_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY skills_update ON public.skills FOR UPDATE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((owner_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin)))) WITH CHECK ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: taggable_types; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.taggable_types ENABLE ROW LEVEL SECURITY;

--
-- Name: taggable_types taggable_types_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY taggable_types_read ON public.taggable_types FOR SELECT TO authenticated USING (true);

--
-- Name: tags; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.tags ENABLE ROW LEVEL SECURITY;

--
-- Name: tags tags_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tags_delete ON public.tags FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((created_by = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin))));

--
-- Name: tags tags_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tags_insert ON public.tags FOR INSERT TO authenticated WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (created_by = ( SELECT fluxopus.uid() AS uid))));

--
-- Name: tags tags_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tags_read ON public.tags FOR SELECT TO authenticated USING ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: tags tags_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tags_update ON public.tags FOR UPDATE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((created_by = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin)))) WITH CHECK ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: tasks; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY;

--
-- Name: tasks tasks_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tasks_delete ON public.tasks FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (( SELECT fluxopus.is_admin() AS is_admin) OR (created_by = ( SELECT fluxopus.uid() AS uid)))));

--
-- Name: tasks tasks_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tasks_insert ON public.tasks FOR INSERT TO authenticated WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (created_by = ( SELECT fluxopus.uid() AS uid))));

--
-- Name: tasks tasks_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tasks_read ON public.tasks FOR SELECT TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (( SELECT fluxopus.is_admin() AS is_admin) OR (created_by = ( SELECT fluxopus.uid() AS uid)) OR (assignee_id = ( SELECT fluxopus.uid() AS uid)))));

--
-- Name: tasks tasks_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tasks_update ON public.tasks FOR UPDATE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (( SELECT fluxopus.is_admin() AS is_admin) OR (created_by = ( SELECT fluxopus.uid() AS uid)) OR (assignee_id = ( SELECT fluxopus.uid() AS uid))))) WITH CHECK ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: time_logs; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.time_logs ENABLE ROW LEVEL SECURITY;

--
-- Name: time_logs time_logs_delete; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY time_logs_delete ON public.time_logs FOR DELETE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((user_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin))));

--
-- Name: time_logs time_logs_insert; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY time_logs_insert ON public.time_logs FOR INSERT TO authenticated WITH CHECK (((user_id = ( SELECT fluxopus.uid() AS uid)) AND (company_id = ( SELECT fluxopus.company_id() AS company_id)) AND (EXISTS ( SELECT 1
   FROM public.tasks t
  WHERE (t.id = time_logs.task_id)))));

--
-- Name: time_logs time_logs_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY time_logs_read ON public.time_logs FOR SELECT TO authenticated USING ((EXISTS ( SELECT 1
   FROM public.tasks t
  WHERE (t.id = time_logs.task_id))));

--
-- Name: time_logs time_logs_update; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY time_logs_update ON public.time_logs FOR UPDATE TO authenticated USING (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((user_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin)))) WITH CHECK (((company_id = ( SELECT fluxopus.company_id() AS company_id)) AND ((user_id = ( SELECT fluxopus.uid() AS uid)) OR ( SELECT fluxopus.is_admin() AS is_admin)) AND (EXISTS ( SELECT 1
   FROM public.tasks t
  WHERE (t.id = time_logs.task_id)))));

--
-- Name: token_usage; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.token_usage ENABLE ROW LEVEL SECURITY;

--
-- Name: token_usage token_usage_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY token_usage_read ON public.token_usage FOR SELECT TO authenticated USING ((company_id = ( SELECT fluxopus.company_id() AS company_id)));

--
-- Name: users; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;

--
-- Name: users users_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY users_read ON public.users FOR SELECT TO authenticated USING (((id = ( SELECT fluxopus.uid() AS uid)) OR (id IN ( SELECT members.user_id
   FROM public.members
  WHERE (members.company_id = ( SELECT fluxopus.company_id() AS company_id))))));

--
-- Name: SCHEMA fluxopus; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA fluxopus TO authenticated;

--
-- Name: FUNCTION bump_skill_version(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.bump_skill_version() FROM PUBLIC;

--
-- Name: FUNCTION can_read_entity(kind text, entity uuid); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.can_read_entity(kind text, entity uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.can_read_entity(kind text, entity uuid) TO authenticated;

--
-- Name: FUNCTION change_membership(target uuid, new_role text); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.change_membership(target uuid, new_role text) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.change_membership(target uuid, new_role text) TO authenticated;

--
-- Name: FUNCTION charge_tokens(caller jsonb, amount bigint, default_limit bigint); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.charge_tokens(caller jsonb, amount bigint, default_limit bigint) FROM PUBLIC;

--
-- Name: FUNCTION cite_run(caller jsonb, run uuid, run_citations jsonb); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.cite_run(caller jsonb, run uuid, run_citations jsonb) FROM PUBLIC;

--
-- Name: FUNCTION claims(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.claims() FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.claims() TO authenticated;

--
-- Name: FUNCTION company_id(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.company_id() FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.company_id() TO authenticated;

--
-- Name: FUNCTION connection_secrets(connection uuid); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.connection_secrets(connection uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.connection_secrets(connection uuid) TO authenticated;

--
-- Name: FUNCTION could_read(kind text, old jsonb, me uuid, admin boolean); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.could_read(kind text, old jsonb, me uuid, admin boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.could_read(kind text, old jsonb, me uuid, admin boolean) TO authenticated;

--
-- Name: FUNCTION count_knowledge_bytes(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.count_knowledge_bytes() FROM PUBLIC;

--
-- Name: FUNCTION delete_entity_tags(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.delete_entity_tags() FROM PUBLIC;

--
-- Name: FUNCTION enqueue_embedding(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.enqueue_embedding() FROM PUBLIC;

--
-- Name: FUNCTION entity_exists(kind text, entity uuid); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.entity_exists(kind text, entity uuid) FROM PUBLIC;

--
-- Name: FUNCTION finish_run(caller jsonb, run uuid, outcome text, run_output text, used_input integer, used_output integer, run_error text); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.finish_run(caller jsonb, run uuid, outcome text, run_output text, used_input integer, used_output integer, run_error text) FROM PUBLIC;

--
-- Name: FUNCTION invite_member(invitee text, invited_role text, secret_hash text, valid_for interval); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.invite_member(invitee text, invited_role text, secret_hash text, valid_for interval) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.invite_member(invitee text, invited_role text, secret_hash text, valid_for interval) TO authenticated;

--
-- Name: FUNCTION is_admin(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.is_admin() FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.is_admin() TO authenticated;

--
-- Name: FUNCTION json_time(t timestamp with time zone); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.json_time(t timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.json_time(t timestamp with time zone) TO authenticated;

--
-- Name: FUNCTION live_visibility(identities text[], change_ids bigint[]); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.live_visibility(identities text[], change_ids bigint[]) FROM PUBLIC;

--
-- Name: FUNCTION log_entity_tag_change(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.log_entity_tag_change() FROM PUBLIC;

--
-- Name: FUNCTION log_knowledge_change(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.log_knowledge_change() FROM PUBLIC;

--
-- Name: FUNCTION log_skill_run_change(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.log_skill_run_change() FROM PUBLIC;

--
-- Name: FUNCTION log_tag_change(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.log_tag_change() FROM PUBLIC;

--
-- Name: FUNCTION log_task_change(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.log_task_change() FROM PUBLIC;

--
-- Name: FUNCTION log_time_log_change(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.log_time_log_change() FROM PUBLIC;

--
-- Name: FUNCTION make_taggable(kind text, rel regclass); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.make_taggable(kind text, rel regclass) FROM PUBLIC;

--
-- Name: FUNCTION matching_chunks(query tsquery, pool integer); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.matching_chunks(query tsquery, pool integer) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.matching_chunks(query tsquery, pool integer) TO authenticated;

--
-- Name: FUNCTION queue_embedding(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.queue_embedding() FROM PUBLIC;

--
-- Name: FUNCTION record_change(company uuid, kind text, op text, entity uuid, old jsonb, detail jsonb); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.record_change(company uuid, kind text, op text, entity uuid, old jsonb, detail jsonb) FROM PUBLIC;

--
-- Name: FUNCTION record_skill_version(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.record_skill_version() FROM PUBLIC;

--
-- Name: FUNCTION record_tool_call(caller jsonb, run uuid, call jsonb); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.record_tool_call(caller jsonb, run uuid, call jsonb) FROM PUBLIC;

--
-- Name: FUNCTION reserve_tokens(amount bigint, default_limit bigint, stale_after interval); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.reserve_tokens(amount bigint, default_limit bigint, stale_after interval) FROM PUBLIC;

--
-- Name: FUNCTION set_membership(company uuid, target uuid, new_role text); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.set_membership(company uuid, target uuid, new_role text) FROM PUBLIC;

--
-- Name: FUNCTION set_task_assignee(task uuid, assignee uuid); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.set_task_assignee(task uuid, assignee uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.set_task_assignee(task uuid, assignee uuid) TO authenticated;

--
-- Name: FUNCTION spend_tokens(company uuid, amount bigint, default_limit bigint); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.spend_tokens(company uuid, amount bigint, default_limit bigint) FROM PUBLIC;

--
-- Name: FUNCTION start_run(caller jsonb, skill uuid, skill_version integer, run_input jsonb, run_provider text, run_model text, reserve bigint, default_limit bigint, stale_after interval); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.start_run(caller jsonb, skill uuid, skill_version integer, run_input jsonb, run_provider text, run_model text, reserve bigint, default_limit bigint, stale_after interval) FROM PUBLIC;

--
-- Name: FUNCTION take_oauth_state(hash text); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.take_oauth_state(hash text) FROM PUBLIC;

--
-- Name: FUNCTION touch_updated_at(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.touch_updated_at() FROM PUBLIC;

--
-- Name: FUNCTION uid(); Type: ACL; Schema: fluxopus; Owner: -
--

REVOKE ALL ON FUNCTION fluxopus.uid() FROM PUBLIC;
GRANT ALL ON FUNCTION fluxopus.uid() TO authenticated;

--
-- Name: TABLE change_log; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.change_log TO authenticated;

--
-- Name: TABLE companies; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.companies TO authenticated;

--
-- Name: COLUMN companies.tools_enabled; Type: ACL; Schema: public; Owner: -
--

GRANT UPDATE(tools_enabled) ON TABLE public.companies TO authenticated;

--
-- Name: TABLE connections; Type: ACL; Schema: public; Owner: -
--

GRANT DELETE ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.id; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(id) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.company_id; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(company_id) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.user_id; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(user_id) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.provider; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(provider),INSERT(provider) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.account_id; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(account_id),INSERT(account_id),UPDATE(account_id) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.account; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(account),INSERT(account),UPDATE(account) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.scopes; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(scopes),INSERT(scopes),UPDATE(scopes) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.status; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(status),INSERT(status),UPDATE(status) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.error; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(error),INSERT(error),UPDATE(error) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.access_token; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(access_token),UPDATE(access_token) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.refresh_token; Type: ACL; Schema: public; Owner: -
--

GRANT INSERT(refresh_token),UPDATE(refresh_token) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.has_refresh_token; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(has_refresh_token) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.token_type; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(token_type),INSERT(token_type),UPDATE(token_type) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.expires_at; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(expires_at),INSERT(expires_at),UPDATE(expires_at) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.created_at; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(created_at) ON TABLE public.connections TO authenticated;

--
-- Name: COLUMN connections.updated_at; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(updated_at) ON TABLE public.connections TO authenticated;

--
-- Name: TABLE entity_tags; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE ON TABLE public.entity_tags TO authenticated;

--
-- Name: TABLE invitations; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,DELETE ON TABLE public.invitations TO authenticated;

--
-- Name: TABLE knowledge; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.knowledge TO authenticated;

--
-- Name: TABLE knowledge_chunks; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.knowledge_chunks TO authenticated;

--
-- Name: TABLE members; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.members TO authenticated;

--
-- Name: TABLE oauth_states; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE ON TABLE public.oauth_states TO authenticated;

--
-- Name: TABLE skill_runs; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.skill_runs TO authenticated;

--
-- Name: TABLE skill_versions; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.skill_versions TO authenticated;

--
-- Name: TABLE skills; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.skills TO authenticated;

--
-- Name: TABLE taggable_types; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.taggable_types TO authenticated;

--
-- Name: TABLE tags; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.tags TO authenticated;

--
-- Name: TABLE tasks; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.tasks TO authenticated;

--
-- Name: TABLE time_logs; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.time_logs TO authenticated;

--
-- Name: TABLE token_usage; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.token_usage TO authenticated;

--
-- Name: COLUMN users.id; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(id) ON TABLE public.users TO authenticated;

--
-- Name: COLUMN users.email; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(email) ON TABLE public.users TO authenticated;

--
-- Name: COLUMN users.created_at; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(created_at) ON TABLE public.users TO authenticated;

--
-- PostgreSQL database dump complete
--
