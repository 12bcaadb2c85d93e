"""Builders and fake external services for tests."""
