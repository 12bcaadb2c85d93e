-- Tenancy, tasks, time logs and tags, with row-level security.
-- Written to run unchanged on Supabase: roles are created only when missing, and the
-- helpers live in our own schema `fluxopus` (Supabase reserves the `auth` schema).

do $$
begin
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
end
$$;

-- The connecting role switches to `authenticated` per transaction (set_config('role', ...)).
do $$
begin
  execute format('grant authenticated to %I', current_user);
exception when others then
  null;  -- already a member, or a superuser (embedded) that needs no grant
end
$$;

create schema if not exists fluxopus;
grant usage on schema fluxopus to authenticated;

create table companies (
  id uuid primary key default gen_random_uuid(),
  name text not null check (char_length(name) between 1 and 200),
  created_at timestamptz not null default now()
);
create unique index companies_name_key on companies (lower(name));

create table users (
  id uuid primary key default gen_random_uuid(),
  email text not null check (char_length(email) between 3 and 320),
  created_at timestamptz not null default now()
);
create unique index users_email_key on users (lower(email));

-- One company per user: the JWT's `sub` decides the tenant.
create table members (
  user_id uuid primary key references users (id) on delete cascade,
  company_id uuid not null references companies (id) on delete cascade,
  role text not null default 'member' check (role in ('admin', 'member')),
  created_at timestamptz not null default now()
);
create index members_company_id_idx on members (company_id);

-- Claims are read with nullif(...): a reused connection returns '' rather than NULL.
create function fluxopus.claims() returns jsonb
language sql stable
as $$ select nullif(current_setting('request.jwt.claims', true), '')::jsonb $$;

create function fluxopus.uid() returns uuid
language sql stable
as $$ select nullif(fluxopus.claims() ->> 'sub', '')::uuid $$;

-- security definer: policies on `members` itself must not recurse through RLS.
create function fluxopus.company_id() returns uuid
language sql stable security definer set search_path = pg_catalog, public
as $$ select company_id from public.members where user_id = fluxopus.uid() $$;

create function fluxopus.is_admin() returns boolean
language sql stable security definer set search_path = pg_catalog, public
as $$ select coalesce((select role = 'admin' from public.members where user_id = fluxopus.uid()), false) $$;

create table tasks (
  id uuid primary key default gen_random_uuid(),
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  title text not null check (char_length(title) between 1 and 500),
  description text check (char_length(description) <= 20000),
  status text not null default 'todo' check (status in ('todo', 'in_progress', 'done', 'cancelled')),
  priority text not null default 'medium' check (priority in ('low', 'medium', 'high', 'urgent')),
  due_date date,
  assignee_id uuid references users (id) on delete set null,
  created_by uuid not null default fluxopus.uid() references users (id),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index tasks_company_created_idx on tasks (company_id, created_at desc);
create index tasks_created_by_idx on tasks (created_by);
create index tasks_assignee_id_idx on tasks (assignee_id);

create table time_logs (
  id uuid primary key default gen_random_uuid(),
  task_id uuid not null references tasks (id) on delete cascade,
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  user_id uuid not null default fluxopus.uid() references users (id),
  minutes integer not null check (minutes between 1 and 1440),
  note text check (char_length(note) <= 2000),
  spent_on date not null default current_date,
  billable boolean not null default false,
  created_at timestamptz not null default now()
);
create index time_logs_task_id_idx on time_logs (task_id, created_at desc);
create index time_logs_user_id_idx on time_logs (user_id);

create table tags (
  id uuid primary key default gen_random_uuid(),
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 50),
  color text check (color ~ '^#[0-9A-Fa-f]{6}$'),
  created_by uuid not null default fluxopus.uid() references users (id),
  created_at timestamptz not null default now()
);
create unique index tags_company_name_key on tags (company_id, lower(name));

-- Polymorphic assignment; entity types are added by later migrations with their tables.
create table entity_tags (
  tag_id uuid not null references tags (id) on delete cascade,
  entity_type text not null check (entity_type in ('task')),
  entity_id uuid not null,
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  created_at timestamptz not null default now(),
  primary key (tag_id, entity_type, entity_id)
);
create index entity_tags_entity_idx on entity_tags (entity_type, entity_id);

-- An entity's tags go with it.
create function fluxopus.delete_entity_tags() returns trigger
language plpgsql security definer set search_path = pg_catalog, public
as $$
begin
  delete from public.entity_tags where entity_type = tg_argv[0] and entity_id = old.id;
  return old;
end
$$;
create trigger tasks_delete_tags after delete on tasks
  for each row execute function fluxopus.delete_entity_tags('task');

create function fluxopus.touch_updated_at() returns trigger
language plpgsql
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
create trigger tasks_touch before update on tasks
  for each row execute function fluxopus.touch_updated_at();

grant select on companies, users, members to authenticated;
grant select, insert, update, delete on tasks, time_logs, tags, entity_tags to authenticated;

alter table companies enable row level security;
alter table users enable row level security;
alter table members enable row level security;
alter table tasks enable row level security;
alter table time_logs enable row level security;
alter table tags enable row level security;
alter table entity_tags enable row level security;

create policy companies_read on companies for select to authenticated
  using (id = (select fluxopus.company_id()));

create policy members_read on members for select to authenticated
  using (company_id = (select fluxopus.company_id()));

create policy users_read on users for select to authenticated
  using (id = (select fluxopus.uid())
         or id in (select user_id from members where company_id = (select fluxopus.company_id())));

-- tasks: admins see the company's, members what they created or are assigned.
create policy tasks_read on tasks for select to authenticated
  using (company_id = (select fluxopus.company_id())
         and ((select fluxopus.is_admin())
              or created_by = (select fluxopus.uid())
              or assignee_id = (select fluxopus.uid())));

create policy tasks_insert on tasks for insert to authenticated
  with check (company_id = (select fluxopus.company_id()) and created_by = (select fluxopus.uid()));

create policy tasks_update on tasks for update to authenticated
  using (company_id = (select fluxopus.company_id())
         and ((select fluxopus.is_admin())
              or created_by = (select fluxopus.uid())
              or assignee_id = (select fluxopus.uid())))
  with check (company_id = (select fluxopus.company_id()));

create policy tasks_delete on tasks for delete to authenticated
  using (company_id = (select fluxopus.company_id())
         and ((select fluxopus.is_admin()) or created_by = (select fluxopus.uid())));

-- Handing a task to someone else hides it from an assignee who is not its creator, and
-- RLS checks the updated row against the read policy too; so reassignment runs here, with
-- the same rule as tasks_update and the new assignee checked to be a colleague.
create function fluxopus.set_task_assignee(task uuid, assignee uuid) returns boolean
language plpgsql security definer set search_path = pg_catalog, public
as $$
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

-- time logs: readable with their task (the subquery runs under the caller's tasks policy).
create policy time_logs_read on time_logs for select to authenticated
  using (exists (select 1 from tasks t where t.id = task_id));

create policy time_logs_insert on time_logs for insert to authenticated
  with check (user_id = (select fluxopus.uid())
              and company_id = (select fluxopus.company_id())
              and exists (select 1 from tasks t where t.id = task_id));

create policy time_logs_update on time_logs for update to authenticated
  using (company_id = (select fluxopus.company_id())
         and (user_id = (select fluxopus.uid()) or (select fluxopus.is_admin())))
  with check (company_id = (select fluxopus.company_id()));

create policy time_logs_delete on time_logs for delete to authenticated
  using (company_id = (select fluxopus.company_id())
         and (user_id = (select fluxopus.uid()) or (select fluxopus.is_admin())));

create policy tags_read on tags for select to authenticated
  using (company_id = (select fluxopus.company_id()));

create policy tags_insert on tags for insert to authenticated
  with check (company_id = (select fluxopus.company_id()) and created_by = (select fluxopus.uid()));

create policy tags_update on tags for update to authenticated
  using (company_id = (select fluxopus.company_id())
         and (created_by = (select fluxopus.uid()) or (select fluxopus.is_admin())))
  with check (company_id = (select fluxopus.company_id()));

create policy tags_delete on tags for delete to authenticated
  using (company_id = (select fluxopus.company_id())
         and (created_by = (select fluxopus.uid()) or (select fluxopus.is_admin())));

-- Assignments are visible and changeable by whoever can read the tagged entity.
create function fluxopus.can_read_entity(kind text, entity uuid) returns boolean
language sql stable
as $$
  select case kind
    when 'task' then exists (select 1 from public.tasks t where t.id = entity)
    else false
  end
$$;

create policy entity_tags_read on entity_tags for select to authenticated
  using (company_id = (select fluxopus.company_id()) and fluxopus.can_read_entity(entity_type, entity_id));

create policy entity_tags_insert on entity_tags for insert to authenticated
  with check (company_id = (select fluxopus.company_id())
              and fluxopus.can_read_entity(entity_type, entity_id)
              and exists (select 1 from tags g where g.id = tag_id));

create policy entity_tags_delete on entity_tags for delete to authenticated
  using (company_id = (select fluxopus.company_id()) and fluxopus.can_read_entity(entity_type, entity_id));

grant execute on all functions in schema fluxopus to authenticated;
