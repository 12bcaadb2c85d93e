"""Strawberry types and root Query/Mutation: thin, every field calls fluxopus.resolvers."""
