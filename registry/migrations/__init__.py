"""Alembic migrations of the registry (run them with registry.migrate.upgrade or
`tanpu db upgrade`). New revision: `alembic -c registry/migrations/alembic.ini revision
--autogenerate -m "..."` with DATABASE_URL pointing at an up-to-date database."""
