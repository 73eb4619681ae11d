"""Alembic migrations, the only way the schema is made (shipped as decision_server.migrations)."""
