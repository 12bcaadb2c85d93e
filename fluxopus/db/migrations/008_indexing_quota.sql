-- Work that costs the operator money or CPU is bounded per company: the tokens the indexer embeds
-- are charged to the company's budget, knowledge has a storage quota, and the indexer serves
-- companies in turn instead of in the order their jobs arrived.

-- ---------------------------------------------------------------------------- tokens

-- Spend `amount` of a company's monthly budget if it still covers it (reservations included).
-- The service's own: the indexer calls it before each batch of chunks it embeds.
create function fluxopus.spend_tokens(company uuid, amount bigint, default_limit bigint) returns boolean
language plpgsql security definer set search_path = pg_catalog, public
as $$
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

-- A search query's embedding, charged for the caller the claims name. It now answers the caller's
-- company (null when the budget does not cover it): the service queues query embeddings per company.
drop function fluxopus.charge_tokens(jsonb, bigint, bigint);
create function fluxopus.charge_tokens(caller jsonb, amount bigint, default_limit bigint) returns uuid
language plpgsql security definer set search_path = pg_catalog, public
as $$
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

-- Both act for whoever their arguments name: only the service's own role may call them.
revoke execute on function fluxopus.spend_tokens(uuid, bigint, bigint) from public, anon, authenticated;
revoke execute on function fluxopus.charge_tokens(jsonb, bigint, bigint) from public, anon, authenticated;

-- ---------------------------------------------------------------------------- storage quota

-- A company's own quota in bytes of knowledge (titles and content); null: the server's default.
alter table companies add column storage_quota bigint check (storage_quota >= 0);

-- What each company stores, kept by the trigger below: one row to lock, never a sum over its items.
create table knowledge_storage (
  company_id uuid primary key references companies (id) on delete cascade,
  bytes bigint not null default 0 check (bytes >= 0)
);
alter table knowledge_storage enable row level security;  -- the service's bookkeeping: no policy, no grant

insert into knowledge_storage (company_id, bytes)
select company_id, sum(octet_length(title) + octet_length(content)) from knowledge group by company_id;

-- Counts every write of knowledge and refuses, atomically (the company's row is locked until the
-- transaction ends), one that would pass the quota: the company's own, else the server's default,
-- which the API sets transaction-locally as `fluxopus.storage_quota`, else 100 MB (writes that do
-- not come through the API, e.g. PostgREST on Supabase).
create function fluxopus.count_knowledge_bytes() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
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
create trigger knowledge_count_bytes after insert or update of title, content or delete on knowledge
  for each row execute function fluxopus.count_knowledge_bytes();

-- ---------------------------------------------------------------------------- fair indexing

-- Jobs carry their company, so a worker can take companies in turn.
alter table embedding_jobs add column company_id uuid references companies (id) on delete cascade;
update embedding_jobs j set company_id = k.company_id from knowledge k where k.id = j.knowledge_id;
alter table embedding_jobs alter column company_id set not null;
create index embedding_jobs_company_idx on embedding_jobs (company_id, run_after);

-- When each company's last job was claimed: the next claim goes to the company served longest ago.
create table embedding_turns (
  company_id uuid primary key references companies (id) on delete cascade,
  served_at timestamptz not null
);
alter table embedding_turns enable row level security;  -- the service's bookkeeping: no policy, no grant

create or replace function fluxopus.enqueue_embedding() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
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

-- A trigger function needs no grant: PostgreSQL checks EXECUTE when a trigger is created, not when it fires.
revoke execute on function fluxopus.count_knowledge_bytes() from public, anon, authenticated;
