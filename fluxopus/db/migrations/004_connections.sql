-- Connections: a user's OAuth grants to third-party tools, and the authorizations in flight.
--
-- Tokens arrive here already encrypted by the service (AES-GCM). On top of that the
-- `authenticated` role may not select the token columns at all: admins list everyone's
-- connections, never their tokens, and only the connecting user's own transaction reads
-- them, through fluxopus.connection_secrets.

create table connections (
  id uuid primary key default gen_random_uuid(),
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  user_id uuid not null default fluxopus.uid() references users (id) on delete cascade,
  provider text not null check (provider ~ '^[a-z][a-z0-9_-]{0,39}$'),
  -- The provider's stable id of the account (OIDC `sub`, GitHub id, Slack team) and a label for people.
  account_id text check (char_length(account_id) <= 500),
  account text check (char_length(account) <= 500),
  scopes text[] not null default '{}',
  status text not null default 'connected' check (status in ('connected', 'revoked', 'error')),
  error text check (char_length(error) <= 1000),
  access_token bytea not null,
  refresh_token bytea,
  has_refresh_token boolean generated always as (refresh_token is not null) stored,
  token_type text check (char_length(token_type) <= 40),
  expires_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- One connection per user and provider: connecting again replaces its tokens.
  unique (user_id, provider)
);
create index connections_company_idx on connections (company_id, created_at desc);

create trigger connections_touch before update on connections
  for each row execute function fluxopus.touch_updated_at();

-- `state` travels through the browser; only its sha256 is kept, so this table alone cannot
-- complete a flow. Single use: the callback deletes the row it reads (take_oauth_state).
create table oauth_states (
  state_hash text primary key check (char_length(state_hash) = 64),
  user_id uuid not null default fluxopus.uid() references users (id) on delete cascade,
  company_id uuid not null default fluxopus.company_id() references companies (id) on delete cascade,
  provider text not null,
  code_verifier bytea not null,  -- PKCE, encrypted like the tokens
  redirect_to text check (char_length(redirect_to) <= 2048),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null default now() + interval '10 minutes'
);
create index oauth_states_user_idx on oauth_states (user_id, created_at desc);
create index oauth_states_expires_idx on oauth_states (expires_at);

-- The callback carries no bearer token: the service takes the state as itself, and then acts
-- as the user the state names. Also sweeps states abandoned long ago.
create function fluxopus.take_oauth_state(hash text)
returns table (user_id uuid, company_id uuid, provider text, code_verifier bytea, redirect_to text, expired boolean)
language sql volatile security definer set search_path = pg_catalog, public
as $$
  with swept as (
    delete from public.oauth_states s where s.expires_at < now() - interval '1 day' and s.state_hash <> hash
  )
  delete from public.oauth_states s where s.state_hash = hash
  returning s.user_id, s.company_id, s.provider, s.code_verifier, s.redirect_to, s.expires_at <= now()
$$;

create function fluxopus.connection_secrets(connection uuid)
returns table (access_token bytea, refresh_token bytea)
language sql stable security definer set search_path = pg_catalog, public
as $$
  select c.access_token, c.refresh_token from public.connections c
   where c.id = connection and c.user_id = fluxopus.uid() and c.company_id = fluxopus.company_id()
$$;

alter table connections enable row level security;
alter table oauth_states enable row level security;

grant select (id, company_id, user_id, provider, account_id, account, scopes, status, error,
              has_refresh_token, token_type, expires_at, created_at, updated_at) on connections to authenticated;
grant insert (provider, account_id, account, scopes, status, error, access_token, refresh_token, token_type,
              expires_at) on connections to authenticated;
grant update (account_id, account, scopes, status, error, access_token, refresh_token, token_type,
              expires_at) on connections to authenticated;
grant delete on connections to authenticated;
grant select, insert, delete on oauth_states to authenticated;

-- The connecting user; admins see the company's connections (never their tokens).
create policy connections_read on connections for select to authenticated
  using (company_id = (select fluxopus.company_id())
         and (user_id = (select fluxopus.uid()) or (select fluxopus.is_admin())));

create policy connections_insert on connections for insert to authenticated
  with check (company_id = (select fluxopus.company_id()) and user_id = (select fluxopus.uid()));

create policy connections_update on connections for update to authenticated
  using (company_id = (select fluxopus.company_id()) and user_id = (select fluxopus.uid()))
  with check (company_id = (select fluxopus.company_id()) and user_id = (select fluxopus.uid()));

create policy connections_delete on connections for delete to authenticated
  using (company_id = (select fluxopus.company_id()) and user_id = (select fluxopus.uid()));

create policy oauth_states_read on oauth_states for select to authenticated
  using (user_id = (select fluxopus.uid()));

create policy oauth_states_insert on oauth_states for insert to authenticated
  with check (user_id = (select fluxopus.uid()) and company_id = (select fluxopus.company_id()));

create policy oauth_states_delete on oauth_states for delete to authenticated
  using (user_id = (select fluxopus.uid()));

grant execute on all functions in schema fluxopus to authenticated;
revoke execute on function fluxopus.take_oauth_state(text) from public, authenticated, anon;
