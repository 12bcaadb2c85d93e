-- Accounts, hardened: joining a company takes proof, sign-ups are counted per address, sessions can
-- expire, and emails are confirmed with a link when the server can send mail.

-- An invitation is accepted only with its single-use secret (only its sha256 is kept), before it
-- expires, by whoever holds the link sent to the address. Several companies may invite one address;
-- its owner chooses which link to follow. Pending invitations made before this migration had no
-- secret and can no longer be accepted: they expire now (an admin invites again).
alter table invitations add column token_hash text check (char_length(token_hash) = 64);
alter table invitations add column expires_at timestamptz not null default now() + interval '7 days';
alter table invitations add column accepted_by uuid references users (id) on delete set null;
update invitations set expires_at = now() where accepted_at is null;
drop index invitations_pending_email_key;
create unique index invitations_pending_email_key on invitations (company_id, lower(email)) where accepted_at is null;
create unique index invitations_token_key on invitations (token_hash);

-- With SMTP configured, a sign-up confirms its address by a link (sha256 of its secret kept here).
alter table users add column confirmation_token_hash text check (char_length(confirmation_token_hash) = 64);
alter table users add column confirmation_sent_at timestamptz;
create unique index users_confirmation_token_key on users (confirmation_token_hash);

-- A session may end by time (`fluxopus token --ttl`); sign-in sessions end by sign-out or reuse.
alter table auth_sessions add column not_after timestamptz;

-- Sign-ups per client address, for their rate limit.
create table sign_ups (
  id bigint generated always as identity primary key,
  address text not null check (char_length(address) <= 64),
  at timestamptz not null default now()
);
create index sign_ups_address_idx on sign_ups (address, at desc);
alter table sign_ups enable row level security;

-- Sign-in failures are counted per email and address (an attacker elsewhere cannot lock the user out).
create index sign_in_attempts_email_address_idx on sign_in_attempts (lower(email), address, at desc);

-- Invite `invitee` into the caller's company as `invited_role`, as an admin of it, with the sha256 of
-- the invitation's secret. The answer is the same whether or not the address has an account, or is
-- invited by another company: nothing about other tenants shows. An address already invited by this
-- company gets its invitation renewed (new secret, new expiry). Returns (outcome, invitation_id):
-- invited | member (already a member of this company) | forbidden.
drop function fluxopus.invite_member(text, text);
create function fluxopus.invite_member(invitee text, invited_role text, secret_hash text, valid_for interval)
returns table (outcome text, invitation_id uuid)
language plpgsql security definer set search_path = pg_catalog, public
as $$
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
revoke execute on function fluxopus.invite_member(text, text, text, interval) from public, anon;
grant execute on function fluxopus.invite_member(text, text, text, interval) to authenticated;

-- Admins withdraw invitations; they are created by invite_member only (it keeps the secret's hash).
revoke insert on invitations from authenticated;
drop policy invitations_insert on invitations;
