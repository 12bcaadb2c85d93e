"""The SQL the resolvers run that is written by hand rather than built with SQLAlchemy Core.

Resolvers build their statements with Core over the tables the declarations give (models/); what
Core would only obscure — window functions, lateral joins, full-text and vector search, calls of
the security-definer functions of the migrations — is written here, once, as named statements.
Each runs in the caller's RLS transaction unless its resolver says otherwise.
"""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, text

from fluxopus.db.jobs import DIMENSIONS

# --- the token budget (resolvers/budget.py) ------------------------------------------------------

TOKEN_BUDGET = text(
    """
    select p.period_start, coalesce(u.used, 0) as used, coalesce(u.reserved, 0) as reserved,
           coalesce(c.monthly_token_budget, :default_limit) as "limit"
    from (select date_trunc('month', now() at time zone 'utc')::date as period_start) p
    cross join companies c
    left join token_usage u on u.company_id = c.id and u.period_start = p.period_start
    where c.id = fluxopus.company_id()
    """
)

# --- connections (resolvers/connections.py) ------------------------------------------------------

CONNECTION_SECRETS = text("select access_token, refresh_token from fluxopus.connection_secrets(:id)")
TAKE_OAUTH_STATE = text("select * from fluxopus.take_oauth_state(:hash)")

# --- knowledge (resolvers/knowledge.py) ----------------------------------------------------------

# The server's default quota, for the trigger that counts each company's bytes (migration 008).
STORAGE_QUOTA = text("select set_config('fluxopus.storage_quota', :quota, true)")

# Chunks each ranking contributes before items are fused and cut to the search's limit. Written into
# the SQL, not bound: request transactions plan once per statement (db/session: generic plans), and a
# plan made not knowing the limit could walk the whole table rather than the vector index.
CANDIDATES = 50

# Items carrying one of the tags `:tags` (a skill's knowledge filter, resolvers/runs.py); the tags' ids as
# text, so one array parameter of any length.
_TAGGED = (
    "knowledge_id in (select t.entity_id from entity_tags t"
    " where t.entity_type = 'knowledge' and t.tag_id::text = any(:tags))"
)

_SEMANTIC = f"""
    select knowledge_id, position, content, 1 - distance as score
      from (select knowledge_id, position, content, embedding <=> :vector as distance
              from knowledge_chunks
             {{where}}
             order by embedding <=> :vector
             limit {CANDIDATES}) nearest
     order by distance
    """
SEMANTIC = text(_SEMANTIC.format(where="")).bindparams(bindparam("vector", type_=Vector(DIMENSIONS)))
SEMANTIC_TAGGED = text(_SEMANTIC.format(where=f"where {_TAGGED}")).bindparams(
    bindparam("vector", type_=Vector(DIMENSIONS))
)

# Candidates come from fluxopus.matching_chunks (the GIN index, within the company); the join
# back to knowledge_chunks applies RLS, so private items of others drop out here. The pool is
# larger than the candidates needed to leave room for them.
_KEYWORD = f"""
    select c.knowledge_id, c.position,
           ts_headline('english', c.content, q.query,
                       'MaxFragments=1, MinWords=12, MaxWords=40, StartSel=**, StopSel=**') as content,
           m.score
      from (select {{query}} as query) q
     cross join lateral fluxopus.matching_chunks(q.query, {CANDIDATES * 4}) m
      join knowledge_chunks c on c.id = m.id
     order by m.score desc, c.id
     limit {CANDIDATES}
    """
# With a tag filter, the company-wide pool could hold none of the tagged items: the tagged chunks are
# ranked directly instead (RLS applies as for any read).
_KEYWORD_TAGGED = f"""
    select c.knowledge_id, c.position,
           ts_headline('english', c.content, q.query,
                       'MaxFragments=1, MinWords=12, MaxWords=40, StartSel=**, StopSel=**') as content,
           ts_rank(c.tsv, q.query) as score
      from (select {{query}} as query) q
      join knowledge_chunks c on c.tsv @@ q.query
     where c.{_TAGGED}
     order by score desc, c.id
     limit {CANDIDATES}
    """
# Every word of the query (websearch syntax: "phrases", -exclusions, or).
_ALL = "websearch_to_tsquery('english', :q)"
ALL_WORDS = text(_KEYWORD.format(query=_ALL))
ALL_WORDS_TAGGED = text(_KEYWORD_TAGGED.format(query=_ALL))
# Any of the words: the keyword mode's fallback when no chunk has them all. Not used in hybrid,
# where it would let every chunk sharing one common word outvote the semantic ranking.
# The words and the -excluded words are split apart first (_split_terms), so an exclusion holds
# wherever it stands: `-late days` must not turn into "not late, or days".
_ANY = (
    "cast((select case when numnode(n) = 0 then p else p && !!n end"
    " from websearch_to_tsquery('english', :any) p, websearch_to_tsquery('english', :excluded) n) as tsquery)"
)
ANY_WORD = text(_KEYWORD.format(query=_ANY))
ANY_WORD_TAGGED = text(_KEYWORD_TAGGED.format(query=_ANY))

# Filtered HNSW scans (RLS drops other companies' chunks) keep scanning until enough rows pass.
SEARCH_SETTINGS = text(
    "select set_config('hnsw.ef_search', '100', true), set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)
