"""Run the Alembic migrations from code (`ledgerq migrate`, `ledgerq up`, test fixtures).

Every run takes a PostgreSQL advisory lock first, so two hosts (or two systemd
`ledgerq-migrate` units, two Kubernetes Jobs, ...) starting together never race: the
second waits for the first, then finds the schema at head and does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from db.core.logs import get_logger

log = get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Fixed, and distinct from the scheduler's leader key (scheduler/leader.py). Advisory
# locks are per database, so runs against different databases never wait on each other.
MIGRATION_LOCK_KEY = 0x6C65_6467_6572_6D  # "ledgerm"
# How long a second migrator waits for the first before giving up (and failing).
LOCK_WAIT_S = 900


def alembic_config(database_url: str) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@contextlib.contextmanager
def migration_lock(database_url: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the migration advisory lock for the block. A session-level lock on its own
    autocommit connection: it is released when the block ends or the process dies."""
    engine = create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if not connection.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
            ).scalar():
                log.info("migrate.waiting_for_lock", wait_s=wait_s)
                connection.execute(text(f"SET lock_timeout = '{int(wait_s * 1000)}ms'"))
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "heads") -> None:
    with migration_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


def head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_heads())


def current_revisions(connection: Connection) -> set[str]:
    """The revisions the database is at (what `alembic_version` holds)."""
    return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
