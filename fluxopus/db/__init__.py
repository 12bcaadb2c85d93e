"""Database: the embedded server, the engine, migrations (SQL + RLS) and the one place sessions are opened."""
