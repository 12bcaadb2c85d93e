"""Pydantic models shared by resolvers, GraphQL and REST: what comes in and what goes out."""
