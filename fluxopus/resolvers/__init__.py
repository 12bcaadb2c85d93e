"""The domain, once: async functions (ctx, **args) that GraphQL and REST both call.

Visibility is decided by PostgreSQL RLS; resolvers never filter by company for security.
"""
