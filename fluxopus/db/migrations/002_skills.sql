-- Skills (versioned prompt templates), their immutable versions, recorded runs, and the
-- per-company monthly token budget that runs reserve from.

create table skills (
  id uuid primary key default gen_random_uuid(),
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  owner_id uuid not null default fluxopus.uid() references users (id),
  name text not null check (char_length(name) between 1 and 200),
  description text check (char_length(description) <= 5000),
  instructions text not null check (char_length(instructions) between 1 and 100000),
  input_schema jsonb check (input_schema is null or jsonb_typeof(input_schema) = 'object'),
  provider text check (provider in ('openai', 'anthropic', 'echo')),
  model text check (char_length(model) between 1 and 200),
  temperature double precision check (temperature between 0 and 2),
  max_tokens integer not null default 1024 check (max_tokens between 1 and 32000),
  visibility text not null default 'private' check (visibility in ('private', 'company')),
  version integer not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index skills_company_idx on skills (company_id, created_at desc);
create index skills_owner_idx on skills (owner_id);

create table skill_versions (
  id uuid primary key default gen_random_uuid(),
  skill_id uuid not null references skills (id) on delete cascade,
  company_id uuid not null references companies (id) on delete cascade,
  version integer not null,
  name text not null,
  description text,
  instructions text not null,
  input_schema jsonb,
  provider text,
  model text,
  temperature double precision,
  max_tokens integer not null,
  created_by uuid not null references users (id),
  created_at timestamptz not null default now(),
  unique (skill_id, version)
);

-- Every change of content is a new immutable version, written here rather than by callers
-- so no code path can forget it. Visibility is not content: changing it keeps the version.
create function fluxopus.bump_skill_version() returns trigger
language plpgsql
as $$
begin
  if (new.name, new.description, new.instructions, new.input_schema, new.provider, new.model,
      new.temperature, new.max_tokens)
     is distinct from
     (old.name, old.description, old.instructions, old.input_schema, old.provider, old.model,
      old.temperature, old.max_tokens) then
    new.version := old.version + 1;
  else
    new.version := old.version;
  end if;
  new.updated_at := now();
  return new;
end
$$;
create trigger skills_bump_version before update on skills
  for each row execute function fluxopus.bump_skill_version();

create function fluxopus.record_skill_version() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' or new.version <> old.version then
    insert into public.skill_versions (skill_id, company_id, version, name, description, instructions,
                                       input_schema, provider, model, temperature, max_tokens, created_by)
    values (new.id, new.company_id, new.version, new.name, new.description, new.instructions,
            new.input_schema, new.provider, new.model, new.temperature, new.max_tokens,
            coalesce(fluxopus.uid(), new.owner_id));
  end if;
  return null;
end
$$;
create trigger skills_record_version after insert or update on skills
  for each row execute function fluxopus.record_skill_version();

create trigger skills_delete_tags after delete on skills
  for each row execute function fluxopus.delete_entity_tags('skill');

-- The monthly budget: a company override, else the server's default (passed in by the caller).
alter table companies add column monthly_token_budget bigint check (monthly_token_budget >= 0);

create table token_usage (
  company_id uuid not null references companies (id) on delete cascade,
  period_start date not null,
  used bigint not null default 0 check (used >= 0),
  reserved bigint not null default 0 check (reserved >= 0),
  primary key (company_id, period_start)
);

create table skill_runs (
  id uuid primary key default gen_random_uuid(),
  skill_id uuid not null references skills (id) on delete cascade,
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  user_id uuid not null default fluxopus.uid() references users (id),
  version integer not null,
  status text not null default 'running'
    check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  input jsonb not null default '{}',
  output text,
  provider text not null,
  model text not null,
  input_tokens integer,
  output_tokens integer,
  error text,
  reserved_tokens bigint not null default 0 check (reserved_tokens >= 0),
  budget_period date,
  created_at timestamptz not null default now(),
  started_at timestamptz default now(),
  finished_at timestamptz
);
create index skill_runs_skill_idx on skill_runs (skill_id, created_at desc);
create index skill_runs_user_idx on skill_runs (user_id);
create index skill_runs_open_idx on skill_runs (company_id, started_at) where status in ('queued', 'running');

-- Reserve `amount` tokens of this month's budget, atomically: the row lock on the company's
-- usage row serialises concurrent runs, and the `where` is re-checked after the lock, so the
-- sum of reservations can never pass the limit. Runs left open longer than `stale_after`
-- (their server died mid-run) are closed first and give their reservation back.
-- Returns the period reserved in, or null when the budget does not cover it.
create function fluxopus.reserve_tokens(amount bigint, default_limit bigint, stale_after interval)
returns date
language plpgsql security definer set search_path = pg_catalog, public
as $$
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

-- Start a run: reserve its tokens, then record it. The service calls this alone, in autocommit,
-- so the company's usage row is locked only while this one statement runs rather than across a
-- round trip to COMMIT: under load, that is what lets many runs of one company start at once.
-- Hence the caller's claims come as an argument, and the read rule of skills (skills_read) is
-- checked here. Null when the budget does not cover the reservation.
create function fluxopus.start_run(caller jsonb, skill uuid, skill_version integer, run_input jsonb,
                                   run_provider text, run_model text, reserve bigint, default_limit bigint,
                                   stale_after interval)
returns uuid
language plpgsql security definer set search_path = pg_catalog, public
as $$
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

-- Close the caller's own open run once: record the outcome and settle the budget, turning
-- its reservation into what was really used. Called alone, in autocommit, like start_run.
create function fluxopus.finish_run(caller jsonb, run uuid, outcome text, run_output text, used_input integer,
                                    used_output integer, run_error text)
returns boolean
language plpgsql security definer set search_path = pg_catalog, public
as $$
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

-- Tags reach skills: a skill's assignments are as visible as the skill.
alter table entity_tags drop constraint entity_tags_entity_type_check;
alter table entity_tags add constraint entity_tags_entity_type_check check (entity_type in ('task', 'skill'));

create or replace function fluxopus.can_read_entity(kind text, entity uuid) returns boolean
language sql stable
as $$
  select case kind
    when 'task' then exists (select 1 from public.tasks t where t.id = entity)
    when 'skill' then exists (select 1 from public.skills s where s.id = entity)
    else false
  end
$$;

grant select, insert, update, delete on skills to authenticated;
grant select on skill_versions, token_usage to authenticated;
grant select, insert on skill_runs to authenticated;

alter table skills enable row level security;
alter table skill_versions enable row level security;
alter table skill_runs enable row level security;
alter table token_usage enable row level security;

-- skills: private ones only for their owner; company ones for every member. Admins may
-- change and delete any skill they can see.
create policy skills_read on skills for select to authenticated
  using (company_id = (select fluxopus.company_id())
         and (owner_id = (select fluxopus.uid()) or visibility = 'company'));

create policy skills_insert on skills for insert to authenticated
  with check (company_id = (select fluxopus.company_id()) and owner_id = (select fluxopus.uid()));

create policy skills_update on skills for update to authenticated
  using (company_id = (select fluxopus.company_id())
         and (owner_id = (select fluxopus.uid()) or (select fluxopus.is_admin())))
  with check (company_id = (select fluxopus.company_id()));

create policy skills_delete on skills for delete to authenticated
  using (company_id = (select fluxopus.company_id())
         and (owner_id = (select fluxopus.uid()) or (select fluxopus.is_admin())));

create policy skill_versions_read on skill_versions for select to authenticated
  using (exists (select 1 from skills s where s.id = skill_id));

create policy skill_runs_read on skill_runs for select to authenticated
  using (company_id = (select fluxopus.company_id())
         and (user_id = (select fluxopus.uid()) or (select fluxopus.is_admin())));

create policy skill_runs_insert on skill_runs for insert to authenticated
  with check (company_id = (select fluxopus.company_id())
              and user_id = (select fluxopus.uid())
              and status = 'running'
              and exists (select 1 from skills s where s.id = skill_id));

create policy token_usage_read on token_usage for select to authenticated
  using (company_id = (select fluxopus.company_id()));

grant execute on all functions in schema fluxopus to authenticated;
-- These act for whoever the claims they are given name: only the service's own role may call them.
revoke execute on function fluxopus.start_run(jsonb, uuid, integer, jsonb, text, text, bigint, bigint, interval)
  from public, authenticated, anon;
revoke execute on function fluxopus.finish_run(jsonb, uuid, text, text, integer, integer, text)
  from public, authenticated, anon;
