"""The compose stack's replica scripts, run for real on this machine: the primary's
first-start script (as the postgres image runs it) and postgres-replica's entrypoint
make a hot standby that streams over the slot with the generated password.

No Docker here: a primary of this test's own (initdb as the image does it, password
authentication over TCP) stands in for `db`, reached on 127.0.0.1 instead of the
service name, and the scripts get the paths the containers would have.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from db.ops.embedded import free_port
from tests.db.test_read_replica import Cluster
from tests.deployment.test_compose import load_init_secrets
from tests.deployment.tools import DEPLOYMENT
from tests.fixtures.processes import wait_for

pytestmark = pytest.mark.slow

SCRIPTS = DEPLOYMENT / "compose"


def _server_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    return found[-1].parent


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _script(name: str, env: dict[str, str], *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([*_as_postgres(), "sh", str(SCRIPTS / name), *args], env=env, **popen)


def test_the_replica_scripts_make_a_streaming_hot_standby():
    bindir = _server_bindir()
    root = Path(tempfile.mkdtemp(prefix="ledgerq-compose-replica-"))
    secrets = root / "secrets"
    load_init_secrets().generate(secrets)
    if os.geteuid() == 0:
        for path in (root, secrets):
            shutil.chown(path, "postgres")
    primary = Cluster(bindir, root / "primary", free_port())
    standby = Cluster(bindir, root / "replica", free_port())
    # As the image: the superuser is POSTGRES_USER, local trust, TCP needs a password.
    primary.run(
        "initdb", "-D", str(primary.data), "-U", "ledgerq", "--auth-local=trust",
        "--auth-host=scram-sha-256", "--no-sync",
    )  # fmt: skip
    primary.start()
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "LEDGERQ_SECRETS": str(secrets),
        "PGHOST": str(root),
        "PGPORT": str(primary.port),
        "POSTGRES_USER": "ledgerq",
        "POSTGRES_DB": "postgres",
        "PGDATA": str(primary.data),
    }
    replica = None
    try:
        assert _script("postgres-primary-init.sh", env).wait(60) == 0
        primary.run("pg_ctl", "-D", str(primary.data), "reload")

        def start_replica() -> subprocess.Popen:
            return _script(
                "postgres-replica.sh",
                {**env, "PGDATA": str(standby.data), "PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": str(primary.port)},
                "-p", str(standby.port), "-c", "listen_addresses=127.0.0.1", "-k", str(root),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip

        replica = start_replica()

        def on_primary(statement: str):
            with psycopg.connect(host=str(root), port=primary.port, user="ledgerq", dbname="postgres") as c:
                c.autocommit = True
                cursor = c.execute(statement)
                return cursor.fetchall() if cursor.description else None

        def on_replica(statement: str):
            try:
                with psycopg.connect(
                    host=str(root), port=standby.port, user="ledgerq", dbname="postgres"
                ) as c:
                    return c.execute(statement).fetchall()
            except psycopg.Error:
                return None

        wait_for("the replica to accept reads", lambda: on_replica("SELECT pg_is_in_recovery()"), 90)
        assert on_replica("SELECT pg_is_in_recovery()") == [(True,)]
        on_primary(
            "CREATE TABLE written_on_the_primary (n int); INSERT INTO written_on_the_primary VALUES (7)"
        )
        wait_for(
            "the row to stream", lambda: on_replica("SELECT n FROM written_on_the_primary") == [(7,)], 30
        )
        assert on_primary(
            "SELECT s.active, r.usename FROM pg_replication_slots s "
            "JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'ledgerq_replica'"
        ) == [(True, "replicator")]

        # A restart reuses the copy and streams again: -R kept the connection, password included.
        standby.stop()
        replica.wait(30)
        replica = start_replica()
        on_primary("INSERT INTO written_on_the_primary VALUES (8)")
        wait_for(
            "the replica to stream after a restart",
            lambda: on_replica("SELECT count(*) FROM written_on_the_primary") == [(2,)],
            60,
        )
        assert on_replica("SELECT pg_is_in_recovery()") == [(True,)]
    except BaseException:
        if replica is not None and replica.poll() is not None:
            print(replica.stdout.read())
        raise
    finally:
        standby.stop()
        if replica is not None:
            replica.wait(30)
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
