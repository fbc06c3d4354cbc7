"""Bringing a database's schema up to date with the Alembic migrations.

`upgrade(url)` is what `tanpu db upgrade`, `make run` and every test database use: the
schema always comes from the migrations, never from metadata.create_all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .db import Database, make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

Target = Union[str, Engine, Database, None]


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _engine(target: Target) -> tuple[Engine, bool]:
    """(engine, whether we made it and must dispose it)."""
    if isinstance(target, Engine):
        return target, False
    if isinstance(target, Database):
        return target.engine, False
    if target is None:
        from .settings import load
        target = load().database_url
    return make_engine(target), True


def upgrade(target: Target = None, revision: str = "head") -> str:
    """Runs the migrations up to `revision` in one transaction; returns the new revision."""
    engine, own = _engine(target)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return current(engine)
    finally:
        if own:
            engine.dispose()


def current(target: Target = None) -> Optional[str]:
    """The database's revision (None: never migrated)."""
    engine, own = _engine(target)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if own:
            engine.dispose()


def is_up_to_date(target: Target = None) -> bool:
    return current(target) == head()
