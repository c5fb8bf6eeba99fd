"""Baselines measured on the same server in the same run: what the machine's PostgreSQL
can do without ledgerq, so that every figure becomes a ratio.

- TPC-B-like (`pgbench`, 8 clients, 2 threads): the ceiling for one small write
  transaction per transfer. Initialised once per run (`pgbench -i`) in a scratch
  database, measured again before each scenario.
- select-only (`pgbench -S`, same clients): the ceiling for one indexed read.
- set-based posting (`setbased.sql` beside this file, through `pgbench -f`): 100
  transfers per transaction on a database built by the real migrations; the ceiling
  for batches.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

SETBASED_SQL = Path(__file__).with_name("setbased.sql")

INSTALL_HINT = (
    "pgbench not found. It measures the baselines every ratio is computed against, so "
    "the bench will not run without it (it never invents a baseline). It ships with the "
    "`pgserver` package this project depends on (pip install -e .), and with PostgreSQL's "
    "client tools: `apt-get install postgresql-client` (Debian/Ubuntu; older releases: "
    "postgresql-contrib), `dnf install postgresql` (Fedora/RHEL), `brew install libpq` "
    "(macOS). Or point --pgbench at the binary."
)


class BaselineError(RuntimeError):
    pass


def find_pgbench(explicit: str | None = None) -> str | None:
    """PATH, then the PostgreSQL installations Debian/Ubuntu keep off PATH (newest first),
    then the binaries of the pgserver package (the embedded PostgreSQL)."""
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pgbench") + glob.glob("/usr/pgsql-*/bin/pgbench")
    candidates.sort(key=lambda path: [int(n) for n in re.findall(r"\d+", path)] or [0], reverse=True)
    try:
        import pgserver

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"))
    except ImportError:
        pass
    return next((path for path in candidates if os.access(path, os.X_OK)), None)


@dataclass(frozen=True)
class PgbenchRun:
    tps: float
    latency_ms: float | None
    transactions: int
    failed: int
    clients: int
    seconds: float
    command: str

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding) initial connection", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Pgbench:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    def run(self, url: str, args: list[str], *, clients: int, seconds: float) -> PgbenchRun:
        argv = [
            self.binary,
            *args,
            "-c",
            str(clients),
            "-j",
            str(min(2, clients)),
            "-T",
            str(max(1, round(seconds))),
        ]
        argv.append(libpq_url(url))
        env = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
        out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        text = out.stdout + out.stderr
        tps = _TPS.search(text)
        if out.returncode != 0 or tps is None:
            raise BaselineError(f"pgbench failed ({' '.join(argv[:-1])}):\n{text[-2000:]}")
        latency, processed, failed = _LATENCY.search(text), _PROCESSED.search(text), _FAILED.search(text)
        return PgbenchRun(
            tps=float(tps.group(1)),
            latency_ms=float(latency.group(1)) if latency else None,
            transactions=int(processed.group(1)) if processed else 0,
            failed=int(failed.group(1)) if failed else 0,
            clients=clients,
            seconds=max(1, round(seconds)),
            command=" ".join([Path(self.binary).name, *argv[1:-1], "<db>"]),
        )

    def initialise(self, url: str, scale: int) -> None:
        argv = [self.binary, "-i", "-q", "-s", str(scale), libpq_url(url)]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise BaselineError(f"pgbench -i failed:\n{(out.stdout + out.stderr)[-2000:]}")


class Baselines:
    """The pgbench baselines of one bench run, on the run's PostgreSQL server."""

    def __init__(self, pgbench: Pgbench, scratch_url: str, *, seconds: float, scale: int, clients: int = 8):
        self.pgbench = pgbench
        self.scratch_url = scratch_url  # a database of its own, made and dropped by the caller
        self.seconds = seconds
        self.scale = scale
        self.clients = clients
        self._initialised = False

    def _ensure_initialised(self) -> None:
        if not self._initialised:
            print(f"  pgbench -i -s {self.scale} (scratch database) ...", file=sys.stderr, flush=True)
            self.pgbench.initialise(self.scratch_url, self.scale)
            self._initialised = True

    def tpcb(self) -> dict[str, object]:
        self._ensure_initialised()
        run = self.pgbench.run(self.scratch_url, [], clients=self.clients, seconds=self.seconds)
        return {"name": "TPC-B-like", "scale": self.scale, **run.as_dict()}

    def select_only(self, clients: int | None = None) -> dict[str, object]:
        self._ensure_initialised()
        run = self.pgbench.run(
            self.scratch_url, ["-S"], clients=clients or self.clients, seconds=self.seconds
        )
        return {"name": "select-only", "scale": self.scale, **run.as_dict()}

    def setbased(
        self,
        url: str,
        *,
        payers: list[uuid.UUID],
        payees: list[uuid.UUID],
        user_id: uuid.UUID,
        clients: int = 4,
        size: int = 100,
    ) -> dict[str, object]:
        """Set-based posting on `url`, a database built by the migrations and seeded
        like the batch scenario's (the same payers and payees, funded)."""
        import psycopg

        with psycopg.connect(libpq_url(url), autocommit=True) as connection:
            for table, ids in (("bench_payers", payers), ("bench_payees", payees)):
                connection.execute(f"DROP TABLE IF EXISTS {table}")
                connection.execute(f"CREATE TABLE {table} (n int PRIMARY KEY, id uuid NOT NULL)")
                with connection.cursor().copy(f"COPY {table} (n, id) FROM STDIN") as copy:
                    for n, account_id in enumerate(ids, start=1):
                        copy.write_row((n, account_id))
            connection.execute("DROP TABLE IF EXISTS bench_meta")
            connection.execute("CREATE TABLE bench_meta (user_id uuid NOT NULL)")
            connection.execute("INSERT INTO bench_meta VALUES (%s)", (user_id,))
        args = [
            "-n",
            "-f",
            str(SETBASED_SQL),
            "-D",
            f"payers={len(payers)}",
            "-D",
            f"payees={len(payees)}",
            "-D",
            f"size={size}",
        ]
        run = self.pgbench.run(url, args, clients=clients, seconds=self.seconds)
        return {
            "name": "set-based posting",
            "transfers_per_transaction": size,
            "transfers_per_s": run.tps * size,
            **run.as_dict(),
        }
