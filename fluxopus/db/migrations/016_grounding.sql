-- Knowledge grounding: a skill's `knowledge` settings (part of its versioned content) and the citations a
-- run records (the items its prompt was given).

alter table skills add column knowledge jsonb check (knowledge is null or jsonb_typeof(knowledge) = 'object');
alter table skill_versions add column knowledge jsonb;
alter table skill_runs add column citations jsonb not null default '[]' check (jsonb_typeof(citations) = 'array');

-- 002_skills' two version triggers, with `knowledge` counted as content.
create or replace function fluxopus.bump_skill_version() returns trigger
language plpgsql
as $$
begin
  if (new.name, new.description, new.instructions, new.input_schema, new.provider, new.model,
      new.temperature, new.max_tokens, new.knowledge)
     is distinct from
     (old.name, old.description, old.instructions, old.input_schema, old.provider, old.model,
      old.temperature, old.max_tokens, old.knowledge) then
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
    insert into public.skill_versions (skill_id, company_id, version, name, description, instructions,
                                       input_schema, provider, model, temperature, max_tokens, knowledge,
                                       created_by)
    values (new.id, new.company_id, new.version, new.name, new.description, new.instructions,
            new.input_schema, new.provider, new.model, new.temperature, new.max_tokens, new.knowledge,
            coalesce(fluxopus.uid(), new.owner_id));
  end if;
  return null;
end
$$;

-- Records what a run's prompt was given, once, while the run is the caller's and still open. Called alone,
-- in autocommit, like start_run (runs are written by the service, never by their users: migration 009).
create function fluxopus.cite_run(caller jsonb, run uuid, run_citations jsonb) returns boolean
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  perform set_config('request.jwt.claims', caller::text, true);
  update public.skill_runs r set citations = run_citations
   where r.id = run and r.user_id = fluxopus.uid() and r.status in ('queued', 'running');
  return found;
end
$$;
revoke execute on function fluxopus.cite_run(jsonb, uuid, jsonb) from public, authenticated, anon;
