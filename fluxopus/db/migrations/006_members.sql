-- Members: inviting someone by email.
--
-- Whether an email already belongs to a member of some company, or has a pending invitation from
-- another one, is hidden from the inviting admin by RLS; so is a user who left their company. The
-- check and the immediate join of such a user run here, and answer only an outcome, never which
-- company holds the email.

-- Invite `invitee` into the caller's company as `invited_role`, as an admin of it. Returns
-- (outcome, invitation_id): invited (a pending invitation) | joined (an existing user without a
-- company became a member at once; the invitation is stored accepted) | member (the email belongs
-- to a member of a company) | pending (the email has a pending invitation) | forbidden.
create function fluxopus.invite_member(invitee text, invited_role text)
returns table (outcome text, invitation_id uuid)
language plpgsql security definer set search_path = pg_catalog, public
as $$
declare
  cid uuid := fluxopus.company_id();
  existing_user uuid;
  new_id uuid;
  violated text;
begin
  if cid is null or not fluxopus.is_admin() then
    return query select 'forbidden'::text, null::uuid;
    return;
  end if;
  select u.id into existing_user from public.users u where lower(u.email) = lower(invitee);
  if existing_user is not null and exists (select 1 from public.members m where m.user_id = existing_user) then
    return query select 'member'::text, null::uuid;
    return;
  end if;
  if exists (select 1 from public.invitations i where lower(i.email) = lower(invitee) and i.accepted_at is null) then
    return query select 'pending'::text, null::uuid;
    return;
  end if;
  -- Two admins inviting the same email at once: the unique keys decide, the loser gets an outcome.
  begin
    if existing_user is not null then
      insert into public.members (user_id, company_id, role) values (existing_user, cid, invited_role);
    end if;
    insert into public.invitations (company_id, email, role, invited_by, accepted_at)
    values (cid, invitee, invited_role, fluxopus.uid(), case when existing_user is not null then now() end)
    returning id into new_id;
  exception when unique_violation then
    get stacked diagnostics violated = constraint_name;
    return query select (case when violated = 'members_pkey' then 'member' else 'pending' end)::text, null::uuid;
    return;
  end;
  return query select (case when existing_user is not null then 'joined' else 'invited' end)::text, new_id;
end
$$;

revoke execute on function fluxopus.invite_member(text, text) from public, anon;
grant execute on function fluxopus.invite_member(text, text) to authenticated;
