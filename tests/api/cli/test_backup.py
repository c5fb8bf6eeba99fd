"""`ledgerq backup` / `ledgerq restore` round-trip a real database, and a restore is
always followed by verify (a dump of a broken ledger restores, then fails loudly)."""

from __future__ import annotations

import os
import subprocess

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from db.core.config import get_settings
from tests.fixtures.http import transfer
from tests.fixtures.infra import scratch_database
from tests.fixtures.ledger import wait_final
from tests.fixtures.processes import LEDGERQ

pytestmark = pytest.mark.slow


def _ledgerq(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url} if database_url else None
    return subprocess.run([LEDGERQ, *args], capture_output=True, text=True, timeout=300, env=env)


def _snapshot(url: str) -> dict[str, list]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
                for table in (
                    "accounts",
                    "balances",
                    "transactions",
                    "ledger_entries",
                    "users",
                    "alembic_version",
                )
            }
    finally:
        engine.dispose()


def test_backup_and_restore_round_trip_a_database_and_verify_it(client, make, worker, tmp_path):
    alice = make.user()
    source, target = make.account(alice, balance="100.00"), make.account(alice)
    response = transfer(client, alice, source, target, "25.50")
    assert response.status_code == 202
    assert wait_final([response.json["id"]]) == {response.json["id"]: "completed"}

    dump = tmp_path / "ledgerq.dump"
    result = _ledgerq("backup", str(dump))
    assert result.returncode == 0, result.stderr
    assert dump.stat().st_size > 0 and not (tmp_path / "ledgerq.dump.partial").exists()

    with scratch_database("ledgerq_restore") as url:
        result = _ledgerq("restore", str(dump), "--database-url", url)
        assert result.returncode == 0, result.stderr
        assert "ledger OK: every invariant holds" in result.stdout
        assert "ledgerq migrate" not in result.stdout  # the schema is at head
        assert _snapshot(url) == _snapshot(get_settings().database_url)

        # Into a database that has data: refused unless --clean.
        result = _ledgerq("restore", str(dump), "--database-url", url)
        assert result.returncode == 1 and "not empty" in result.stderr
        result = _ledgerq("restore", str(dump), "--database-url", url, "--clean")
        assert result.returncode == 0, result.stderr
        assert _snapshot(url) == _snapshot(get_settings().database_url)


def test_a_restore_of_a_broken_ledger_fails_verification(make, tmp_path):
    alice = make.user()
    make.account(alice, balance="10.00")
    good = tmp_path / "good.dump"
    assert _ledgerq("backup", str(good)).returncode == 0
    with scratch_database("ledgerq_broken") as broken_url:
        assert _ledgerq("restore", str(good), "--database-url", broken_url).returncode == 0
        engine = create_engine(broken_url, poolclass=NullPool)
        with engine.begin() as connection:  # a balance that no longer matches its entries
            connection.execute(
                text("UPDATE balances SET balance_minor = balance_minor + 1 WHERE balance_minor > 0")
            )
        engine.dispose()
        broken = tmp_path / "broken.dump"
        assert _ledgerq("backup", str(broken), database_url=broken_url).returncode == 0
        with scratch_database("ledgerq_restore") as url:
            result = _ledgerq("restore", str(broken), "--database-url", url)
    assert result.returncode == 1
    assert "ledger verification FAILED after restore" in result.stderr
    assert "entries sum to" in result.stderr


def test_backup_reports_an_unreachable_database(tmp_path):
    from tests.fixtures.infra import closed_port

    result = _ledgerq(
        "backup",
        str(tmp_path / "x.dump"),
        database_url=f"postgresql://postgres@127.0.0.1:{closed_port()}/nope",
    )
    assert result.returncode == 1
    assert "backup FAILED: cannot connect to the database" in result.stderr
    assert not (tmp_path / "x.dump").exists()
