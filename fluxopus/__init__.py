"""Fluxopus: tasks, skills, knowledge, connections and tags behind GraphQL and a generated REST API."""
