"""`ledgerq migrate` takes a PostgreSQL advisory lock: two hosts starting together never
race, the second waits for the first and then finds nothing to do."""

from __future__ import annotations

import subprocess

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from db.migrate import MIGRATION_LOCK_KEY, head_revisions
from tests.fixtures.infra import scratch_database
from tests.fixtures.processes import LEDGERQ, Processes, wait_for


def _versions(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            exists = connection.execute(text("SELECT to_regclass('alembic_version')")).scalar()
            if exists is None:
                return set()
            return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _migrate(processes: Processes, name: str, url: str) -> subprocess.Popen:
    return processes.start(name, [LEDGERQ, "migrate"], env={"DATABASE_URL": url})


def test_two_concurrent_migrations_both_succeed_and_reach_head(tmp_path):
    processes = Processes(tmp_path)
    try:
        with scratch_database("ledgerq_migrate") as url:
            first, second = _migrate(processes, "first", url), _migrate(processes, "second", url)
            assert first.wait(timeout=120) == 0, processes.logs()
            assert second.wait(timeout=120) == 0, processes.logs()
            assert _versions(url) == head_revisions()
    finally:
        processes.kill_all()


def test_a_migration_waits_while_another_holds_the_lock(tmp_path):
    processes = Processes(tmp_path)
    try:
        with scratch_database("ledgerq_migrate") as url:
            with psycopg.connect(_plain(url), autocommit=True) as holder:
                holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
                waiting = _migrate(processes, "waiting", url)

                def blocked_on_the_lock() -> bool:
                    row = holder.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    ).fetchone()
                    assert waiting.poll() is None, processes.logs()
                    return row[0] == 1

                wait_for("ledgerq migrate to wait for the advisory lock", blocked_on_the_lock, timeout=60)
                assert _versions(url) == set()  # nothing ran while the lock was held
                holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
                assert waiting.wait(timeout=120) == 0, processes.logs()
            assert _versions(url) == head_revisions()
            assert "migrate.waiting_for_lock" in processes.logs_text("waiting")
    finally:
        processes.kill_all()
