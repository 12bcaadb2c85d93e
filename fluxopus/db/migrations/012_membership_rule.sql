-- The last-admin rule in one place. fluxopus.set_membership changes a member's role or removes them
-- (new_role null) while keeping the company's last admin; the API's change_membership checks the
-- caller and calls it, and the operator's CLI (`fluxopus users set-role`, as the service) calls it
-- directly. The company's admins are locked first, so two demotions at once cannot leave it with none.
-- Returns ok | not_found | last_admin.
create function fluxopus.set_membership(company uuid, target uuid, new_role text) returns text
language plpgsql security definer set search_path = pg_catalog, public
as $$
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
-- Not for callers: it trusts the company it is given.
revoke execute on function fluxopus.set_membership(uuid, uuid, text) from public, anon, authenticated;

-- As an admin of the caller's company. Returns ok | not_found | forbidden | last_admin.
create or replace function fluxopus.change_membership(target uuid, new_role text) returns text
language plpgsql security definer set search_path = pg_catalog, public
as $$
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
