-- Accounts: passwords and sessions of the built-in, Supabase-compatible sign-in (/auth/v1),
-- sign-in attempts for rate limiting, invitations, and the rules for managing members.
--
-- Credentials, sessions and attempts are the service's own: RLS is on and `authenticated` has
-- no grant on them. Users see members and invitations of their company through policies, and
-- change memberships only through the functions below, which keep a company's last admin.

alter table users add column password_hash text;
alter table users add column email_confirmed_at timestamptz;
alter table users add column last_sign_in_at timestamptz;
alter table users add column user_metadata jsonb not null default '{}'::jsonb;

-- Colleagues see each other's id and email, never a password hash.
revoke select on users from authenticated;
grant select (id, email, created_at) on users to authenticated;

create table auth_sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references users (id) on delete cascade,
  created_at timestamptz not null default now(),
  refreshed_at timestamptz,
  revoked_at timestamptz,
  revoked_reason text,
  user_agent text check (char_length(user_agent) <= 512),
  address text check (char_length(address) <= 64)
);
create index auth_sessions_user_idx on auth_sessions (user_id);

-- Opaque refresh tokens, kept as sha256. Single use: a refresh marks its token used and issues a
-- child; presenting a used token again means it leaked, and the whole session is revoked.
create table refresh_tokens (
  token_hash text primary key check (char_length(token_hash) = 64),
  session_id uuid not null references auth_sessions (id) on delete cascade,
  parent_hash text,
  used_at timestamptz,
  created_at timestamptz not null default now()
);
create index refresh_tokens_session_idx on refresh_tokens (session_id);

create table sign_in_attempts (
  id bigint generated always as identity primary key,
  email text not null,
  address text not null,
  succeeded boolean not null,
  at timestamptz not null default now()
);
create index sign_in_attempts_email_idx on sign_in_attempts (lower(email), at desc);
create index sign_in_attempts_address_idx on sign_in_attempts (address, at desc);

create table invitations (
  id uuid primary key default gen_random_uuid(),
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  email text not null check (char_length(email) between 3 and 320),
  role text not null default 'member' check (role in ('admin', 'member')),
  invited_by uuid not null default fluxopus.uid() references users (id) on delete cascade,
  created_at timestamptz not null default now(),
  accepted_at timestamptz
);
-- A user belongs to one company, so an email has at most one pending invitation.
create unique index invitations_pending_email_key on invitations (lower(email)) where accepted_at is null;
create index invitations_company_idx on invitations (company_id, created_at desc);

alter table auth_sessions enable row level security;
alter table refresh_tokens enable row level security;
alter table sign_in_attempts enable row level security;
alter table invitations enable row level security;

grant select, insert, delete on invitations to authenticated;

create policy invitations_read on invitations for select to authenticated
  using (company_id = (select fluxopus.company_id()) and (select fluxopus.is_admin()));

create policy invitations_insert on invitations for insert to authenticated
  with check (company_id = (select fluxopus.company_id()) and (select fluxopus.is_admin())
              and invited_by = (select fluxopus.uid()));

create policy invitations_delete on invitations for delete to authenticated
  using (company_id = (select fluxopus.company_id()) and (select fluxopus.is_admin()));

-- Change a colleague's role, or remove them from the company (new_role null), as an admin of it.
-- The company's admins are locked first, so two admins demoting each other at once cannot leave
-- it with none. Returns ok | not_found | forbidden | last_admin.
create function fluxopus.change_membership(target uuid, new_role text) returns text
language plpgsql security definer set search_path = pg_catalog, public
as $$
declare
  cid uuid := fluxopus.company_id();
  current_role_of_target text;
  admins integer;
begin
  if cid is null then
    return 'forbidden';
  end if;
  perform 1 from public.members m where m.company_id = cid and m.role = 'admin' order by m.user_id for update;
  select m.role into current_role_of_target from public.members m where m.user_id = target and m.company_id = cid;
  if current_role_of_target is null then
    return 'not_found';
  end if;
  if not fluxopus.is_admin() then
    return 'forbidden';
  end if;
  if current_role_of_target = 'admin' and new_role is distinct from 'admin' then
    select count(*) into admins from public.members m where m.company_id = cid and m.role = 'admin';
    if admins <= 1 then
      return 'last_admin';
    end if;
  end if;
  if new_role is null then
    delete from public.members m where m.user_id = target and m.company_id = cid;
  else
    update public.members m set role = new_role where m.user_id = target and m.company_id = cid;
  end if;
  return 'ok';
end
$$;

grant execute on all functions in schema fluxopus to authenticated;
