-- Knowledge items, their embedded chunks, and the queue of items waiting to be embedded.

create extension if not exists vector;

create table knowledge (
  id uuid primary key default gen_random_uuid(),
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  owner_id uuid not null default fluxopus.uid() references users (id),
  title text not null check (char_length(title) between 1 and 500),
  content text not null check (octet_length(content) <= 1048576),
  source_url text check (char_length(source_url) <= 2048),
  visibility text not null default 'company' check (visibility in ('company', 'private')),
  status text not null default 'pending' check (status in ('pending', 'indexed', 'failed')),
  error text,
  -- Bumped on every change of what is embedded, so a job finishing late cannot write old chunks.
  revision integer not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index knowledge_company_idx on knowledge (company_id, created_at desc);
create index knowledge_owner_idx on knowledge (owner_id);

create table knowledge_chunks (
  id bigint generated always as identity primary key,
  knowledge_id uuid not null references knowledge (id) on delete cascade,
  company_id uuid not null references companies (id) on delete cascade,
  position integer not null,
  content text not null,
  tsv tsvector not null,
  embedding vector(384) not null,
  model text not null,
  unique (knowledge_id, position)
);
create index knowledge_chunks_embedding_idx on knowledge_chunks using hnsw (embedding vector_cosine_ops);
create index knowledge_chunks_tsv_idx on knowledge_chunks using gin (tsv);
create index knowledge_chunks_model_idx on knowledge_chunks (model);

-- One job per item; a new revision resets it. Claimed with FOR UPDATE SKIP LOCKED and a lease,
-- so two server processes never embed the same item at once, and a crashed worker's job is
-- taken again when its lease runs out.
create table embedding_jobs (
  knowledge_id uuid primary key references knowledge (id) on delete cascade,
  revision integer not null,
  attempts integer not null default 0,
  run_after timestamptz not null default now(),
  locked_until timestamptz,
  last_error text,
  created_at timestamptz not null default now()
);
create index embedding_jobs_due_idx on embedding_jobs (run_after);

-- Writes of content queue the item; workers hear about it at once through NOTIFY.
create function fluxopus.queue_embedding() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
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
create trigger knowledge_queue before insert or update on knowledge
  for each row execute function fluxopus.queue_embedding();

create function fluxopus.enqueue_embedding() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' or new.revision <> old.revision then
    insert into public.embedding_jobs (knowledge_id, revision) values (new.id, new.revision)
    on conflict (knowledge_id) do update
      set revision = excluded.revision, attempts = 0, run_after = now(), locked_until = null, last_error = null;
    perform pg_notify('fluxopus_embedding_jobs', new.id::text);
  end if;
  return null;
end
$$;
create trigger knowledge_enqueue after insert or update on knowledge
  for each row execute function fluxopus.enqueue_embedding();

create trigger knowledge_delete_tags after delete on knowledge
  for each row execute function fluxopus.delete_entity_tags('knowledge');

-- Full-text candidates within the caller's company, best first. `@@` is not leakproof, so under
-- RLS PostgreSQL will not use the GIN index and scans every chunk; here (security definer) it
-- does. The caller joins the ids back to knowledge_chunks, where RLS still decides visibility.
create function fluxopus.matching_chunks(query tsquery, pool integer)
returns table (id bigint, score real)
language sql stable security definer set search_path = pg_catalog, public
as $$
  select c.id, ts_rank(c.tsv, query) as score
    from public.knowledge_chunks c
   where c.company_id = fluxopus.company_id() and c.tsv @@ query
   order by score desc, c.id
   limit pool
$$;

-- Charge the tokens of a search query's embedding, if the budget still covers them. Called
-- alone in autocommit, like start_run, so the usage row is locked only for this statement.
create function fluxopus.charge_tokens(caller jsonb, amount bigint, default_limit bigint) returns boolean
language plpgsql security definer set search_path = pg_catalog, public
as $$
declare
  cid uuid;
  period date := date_trunc('month', now() at time zone 'utc')::date;
  budget bigint;
begin
  perform set_config('request.jwt.claims', caller::text, true);
  cid := fluxopus.company_id();
  if cid is null then
    raise exception 'not a member of any company' using errcode = '42501';
  end if;
  select coalesce(c.monthly_token_budget, default_limit) into budget from public.companies c where c.id = cid;
  insert into public.token_usage (company_id, period_start) values (cid, period) on conflict do nothing;
  update public.token_usage u set used = u.used + amount
   where u.company_id = cid and u.period_start = period and u.used + u.reserved + amount <= budget;
  return found;
end
$$;

alter table entity_tags drop constraint entity_tags_entity_type_check;
alter table entity_tags add constraint entity_tags_entity_type_check
  check (entity_type in ('task', 'skill', 'knowledge'));

create or replace function fluxopus.can_read_entity(kind text, entity uuid) returns boolean
language sql stable
as $$
  select case kind
    when 'task' then exists (select 1 from public.tasks t where t.id = entity)
    when 'skill' then exists (select 1 from public.skills s where s.id = entity)
    when 'knowledge' then exists (select 1 from public.knowledge k where k.id = entity)
    else false
  end
$$;

grant select, insert, update, delete on knowledge to authenticated;
grant select on knowledge_chunks to authenticated;

alter table knowledge enable row level security;
alter table knowledge_chunks enable row level security;
alter table embedding_jobs enable row level security;

-- company items for every member, private ones for their owner; the owner and admins edit.
create policy knowledge_read on knowledge for select to authenticated
  using (company_id = (select fluxopus.company_id())
         and (visibility = 'company' or owner_id = (select fluxopus.uid())));

create policy knowledge_insert on knowledge for insert to authenticated
  with check (company_id = (select fluxopus.company_id()) and owner_id = (select fluxopus.uid()));

create policy knowledge_update on knowledge for update to authenticated
  using (company_id = (select fluxopus.company_id())
         and (owner_id = (select fluxopus.uid()) or (select fluxopus.is_admin())))
  with check (company_id = (select fluxopus.company_id()));

create policy knowledge_delete on knowledge for delete to authenticated
  using (company_id = (select fluxopus.company_id())
         and (owner_id = (select fluxopus.uid()) or (select fluxopus.is_admin())));

-- Chunks are exactly as visible as their item (written only by the service's worker).
create policy knowledge_chunks_read on knowledge_chunks for select to authenticated
  using (company_id = (select fluxopus.company_id())
         and exists (select 1 from knowledge k where k.id = knowledge_id));

grant execute on all functions in schema fluxopus to authenticated;
revoke execute on function fluxopus.charge_tokens(jsonb, bigint, bigint) from public, authenticated, anon;
