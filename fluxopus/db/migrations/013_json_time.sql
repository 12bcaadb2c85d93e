-- A timestamp as the API writes it in JSON (pydantic's format, which REST and GraphQL share): UTC with
-- a `Z`, the fraction only when there is one, six digits then: 2026-01-01T00:00:00Z,
-- 2026-01-01T00:00:00.120000Z. For JSON built in the database (GraphQL reads compiled to SQL,
-- schema/compiled.py). Stable, not immutable, like the to_char it calls: so it is inlined.
create function fluxopus.json_time(t timestamptz) returns text
language sql stable parallel safe
return to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
  || case when extract(microseconds from t at time zone 'UTC')::bigint % 1000000 = 0 then ''
          else to_char(t at time zone 'UTC', '.US') end
  || 'Z';
revoke all on function fluxopus.json_time(timestamptz) from public, anon;
grant execute on function fluxopus.json_time(timestamptz) to authenticated;
