-- One registry of what can be tagged. Registering a table (fluxopus.make_taggable) is the only step a
-- new taggable entity needs in SQL: the registry is what entity_tags.entity_type may hold (a foreign
-- key instead of a check listing the types), the delete trigger that takes an entity's tags with it is
-- created from it, and fluxopus.can_read_entity is regenerated from it. The Python side
-- (models/tags.TAGGABLE) is checked against this table by tests/test_declarations.py.

create table taggable_types (
  entity_type text primary key check (entity_type ~ '^[a-z][a-z_]*$'),
  relation regclass not null unique
);
alter table taggable_types enable row level security;
-- Which types exist is no secret; who may read an entity is still each table's RLS.
create policy taggable_types_read on taggable_types for select to authenticated using (true);
grant select on taggable_types to authenticated;

-- Reading the registry at every call would cost a lookup per entity_tags row in the policies; the
-- function is rebuilt instead as one static CASE over the registered tables, each read under the
-- caller's RLS.
create function fluxopus.make_taggable(kind text, rel regclass) returns void
language plpgsql
set search_path = pg_catalog, public
as $$
declare
  cases text;
  table_name text := (select c.relname from pg_class c where c.oid = rel);
begin
  insert into public.taggable_types (entity_type, relation) values (kind, rel)
    on conflict (entity_type) do update set relation = excluded.relation;
  execute format('drop trigger if exists %I on %s', table_name || '_delete_tags', rel);
  execute format(
    'create trigger %I after delete on %s for each row execute function fluxopus.delete_entity_tags(%L)',
    table_name || '_delete_tags', rel, kind);
  select string_agg(format('when %L then exists (select 1 from %s x where x.id = entity)', t.entity_type, t.relation),
                    ' ' order by t.entity_type)
    into cases from public.taggable_types t;
  execute format(
    'create or replace function fluxopus.can_read_entity(kind text, entity uuid) returns boolean'
    ' language sql stable as %L',
    'select case kind ' || cases || ' else false end');
end
$$;
revoke all on function fluxopus.make_taggable(text, regclass) from public;

alter table entity_tags drop constraint entity_tags_entity_type_check;
select fluxopus.make_taggable('task', 'public.tasks');
select fluxopus.make_taggable('skill', 'public.skills');
select fluxopus.make_taggable('knowledge', 'public.knowledge');
alter table entity_tags add constraint entity_tags_entity_type_fkey
  foreign key (entity_type) references taggable_types (entity_type);
