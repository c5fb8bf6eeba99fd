"""Alembic environment: online migrations against DATABASE_URL (or the URL the caller
put in the config, which is how tests point it at their own database)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import db.analytics.models  # noqa: F401  (the rollup tables, on the same Base)
from db.core.config import get_settings
from db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
