"""DATABASE_READ_URL: heavy reads come from a streaming replica, fresh reads and auth from
the primary.

The replica is real: a PostgreSQL primary of this test's own (the shared test server
allows no replication connections), `pg_basebackup -R` of it, started as a hot standby.
Pausing the standby's WAL replay makes the routing visible: an account created on the
primary is there for `GET /accounts/{id}` (primary) and not yet for its entries or the
history (replica), until replay resumes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from db.auth.users import create_user
from db.core.config import get_settings
from db.migrate import upgrade
from db.ops.embedded import free_port
from db.session import unit_of_work
from tests.fixtures.http import API, app_with, bearer, login
from tests.fixtures.processes import wait_for

pytestmark = pytest.mark.slow


def _bindir() -> Path | None:
    """A directory with every server tool (Debian's versioned one is complete; PATH may
    hold only some of them)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_basebackup") else None


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Cluster:
    def __init__(self, bindir: Path, data: Path, port: int) -> None:
        self.bindir, self.data, self.port = bindir, data, port

    def tool(self, name: str) -> str:
        path = self.bindir / name
        return str(path) if path.exists() else (shutil.which(name) or name)

    def run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*_as_postgres(), self.tool(tool), *args], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{tool}: {result.stdout}{result.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent} -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", f"{self.data}.log", "-w", "start")

    def stop(self) -> None:
        subprocess.run(
            [*_as_postgres(), self.tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres"):
        dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture
def replicated():
    bindir = _bindir()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("no PostgreSQL server binaries (initdb) or no way to run them as non-root here")
    # Not under pytest's tmp dir: its parents are private to root, and the servers run
    # as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="ledgerq-replica-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    primary = Cluster(bindir, root / "primary", free_port())
    standby = Cluster(bindir, root / "standby", free_port())
    # initdb's default pg_hba.conf trusts local replication connections.
    primary.run("initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--no-sync")
    primary.start()
    try:
        primary.sql("CREATE DATABASE ledgerq")
        upgrade(primary.url("ledgerq"))
        primary.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        standby.start()
        try:
            assert standby.sql("SELECT pg_is_in_recovery()") == [(True,)]
            yield primary, standby
        finally:
            standby.stop()
    finally:
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


def _caught_up(primary: Cluster, standby: Cluster) -> bool:
    (lsn,) = primary.sql("SELECT pg_current_wal_lsn()::text")[0]
    return standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")[0][0]


def test_heavy_reads_come_from_the_replica_fresh_ones_from_the_primary(replicated):
    primary, standby = replicated
    settings = get_settings().model_copy(
        update={"database_url": primary.url("ledgerq"), "database_read_url": standby.url("ledgerq")}
    )
    with unit_of_work(settings) as uow:
        create_user(uow.session, username="alice", email="alice@example.com", password="blue kettle morning")
    wait_for("the standby to replay the user", lambda: _caught_up(primary, standby), 30)
    app = app_with(database_url=settings.database_url, database_read_url=settings.database_read_url)
    client = app.test_client()
    alice = bearer(login(client, "alice", "blue kettle morning")["access_token"])

    standby.sql("SELECT pg_wal_replay_pause()")
    created = client.post(f"{API}/accounts", json={"currency": "USD", "name": "main"}, headers=alice)
    assert created.status_code == 201, created.json
    account_id = created.json["id"]

    assert client.get(f"{API}/accounts/{account_id}", headers=alice).status_code == 200  # primary: fresh
    # Still paused: the replica has not seen the account yet, so these were served by it.
    assert client.get(f"{API}/accounts/{account_id}/entries", headers=alice).status_code == 404
    history = client.get(f"{API}/transactions/history?account_id={account_id}", headers=alice)
    assert history.status_code == 404

    standby.sql("SELECT pg_wal_replay_resume()")
    wait_for("the standby to replay the account", lambda: _caught_up(primary, standby), 30)
    entries = client.get(f"{API}/accounts/{account_id}/entries", headers=alice)
    assert entries.status_code == 200 and entries.json["items"] == []
    assert client.get(f"{API}/transactions/history?account_id={account_id}", headers=alice).status_code == 200

    # The same reads with no DATABASE_READ_URL go to the primary: fresh at once.
    standby.sql("SELECT pg_wal_replay_pause()")
    single = app_with(database_url=settings.database_url).test_client()
    second = single.post(f"{API}/accounts", json={"currency": "USD"}, headers=alice).json["id"]
    assert single.get(f"{API}/accounts/{second}/entries", headers=alice).status_code == 200
