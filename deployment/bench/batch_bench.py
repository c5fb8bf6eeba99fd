"""Batch throughput benchmark (not a test): upload an N-line CSV file through the real
API (gunicorn) to real workers (`ledgerq worker`), wait until every line is final, and
print lines/s and the peak RSS of the API and worker processes.

    python deployment/bench/batch_bench.py --lines 100000
    python deployment/bench/batch_bench.py --lines 1000000 --bad-every 1000

It uses the PostgreSQL and Redis of DATABASE_URL / REDIS_URL (default: the local
servers), creates a fresh database `ledgerq_bench` (dropped afterwards unless --keep),
and its own Redis namespace, so it never touches another stack's data. At the end it
runs `ledgerq verify`'s checks: the figures only count if the ledger is sound.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--payers", type=int, default=20, help="funded source accounts")
    parser.add_argument("--payees", type=int, default=5_000, help="destination accounts")
    parser.add_argument("--bad-every", type=int, default=0, help="make every Nth line invalid (0: none)")
    parser.add_argument("--mode", choices=["independent", "atomic"], default="independent")
    parser.add_argument("--worker-processes", type=int, default=1)
    parser.add_argument("--worker-threads", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=None, help="LEDGERQ_BATCH_CHUNK_SIZE")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    return parser.parse_args()


def make_database(server: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def seed(args: argparse.Namespace) -> tuple[str, list[uuid.UUID], list[uuid.UUID]]:
    """A finance user, funded payers and payees, through the real services."""
    from db.accounts.service import open_account
    from db.auth.users import create_user
    from db.core.config import get_settings
    from db.ledger.posting import apply_transaction
    from db.migrate import upgrade
    from db.session import unit_of_work
    from db.transactions.service import MoneyMovement, submit

    settings = get_settings()
    upgrade(settings.database_url)
    password = secrets.token_urlsafe(16)
    with unit_of_work() as uow:
        user = create_user(
            uow.session,
            username="bench-finance",
            email="bench@example.com",
            password=password,
            role="finance",
        )
    from db.core.principal import Principal

    finance = Principal(id=user.id, role="finance", username="bench-finance")
    payers, payees = [], []
    with unit_of_work() as uow:
        for _ in range(args.payers):
            payers.append(open_account(uow.session, finance, currency="USD", name="payer", owner_id=None).id)
        for _ in range(args.payees):
            payees.append(open_account(uow.session, finance, currency="USD", name="payee", owner_id=None).id)
    with unit_of_work() as uow:
        for account_id in payers:
            credit = MoneyMovement(
                type="credit", amount="1000000000.00", currency="USD", account_id=account_id
            )
            tx = submit(uow.session, finance, credit, idempotency_key=None, settings=settings).transaction
            apply_transaction(uow.session, tx.id)
    return password, payers, payees


def write_file(
    path: Path, args: argparse.Namespace, payers: list[uuid.UUID], payees: list[uuid.UUID]
) -> None:
    rng = random.Random(42)  # noqa: S311 - test data
    with path.open("w", newline="") as handle:
        handle.write("from_account_id,to_account_id,amount,currency,reference\n")
        for line in range(1, args.lines + 1):
            amount = f"{rng.randint(1, 9_999)}.{rng.randint(0, 99):02d}"
            if args.bad_every and line % args.bad_every == 0:
                amount = "12.345"  # too many decimals: rejected
            handle.write(f"{rng.choice(payers)},{rng.choice(payees)},{amount},USD,bench-{line}\n")


class RssSampler(threading.Thread):
    """Peak RSS of each process tree (the process and its children), sampled."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak_total = dict.fromkeys(roots, 0)
        self.peak_single = dict.fromkeys(roots, 0)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                    sizes = []
                    for proc in procs:
                        with contextlib.suppress(psutil.Error):
                            sizes.append(proc.memory_info().rss)
                    self.peak_total[name] = max(self.peak_total[name], sum(sizes))
                    self.peak_single[name] = max(self.peak_single[name], max(sizes, default=0))
                except psutil.Error:
                    pass
            self.stop.wait(0.2)


def wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - local
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"API did not come up at {url}")


def main() -> None:
    args = parse_args()
    db_name = "ledgerq_bench"
    database_url = make_database(args.server, db_name)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis,
        "LEDGERQ_REDIS_NAMESPACE": f"ledgerq-bench-{secrets.token_hex(3)}",
        "LEDGERQ_ENV": "development",
        "JWT_SECRET": os.environ.get("JWT_SECRET") or secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "PORT": str(args.port),
        "WEB_WORKERS": "2",
        "WORKER_PROCESSES": str(args.worker_processes),
        "WORKER_THREADS": str(args.worker_threads),
    }
    if args.chunk_size:
        env["LEDGERQ_BATCH_CHUNK_SIZE"] = str(args.chunk_size)
    os.environ.update(env)

    print(f"seeding {args.payers} payers, {args.payees} payees ...", flush=True)
    password, payers, payees = seed(args)
    workdir = Path(tempfile.mkdtemp(prefix="ledgerq-bench-"))
    csv_path = workdir / f"bench-{args.lines}.csv"
    started = time.perf_counter()
    write_file(csv_path, args, payers, payees)
    size_mb = csv_path.stat().st_size / 1e6
    print(
        f"generated {args.lines} lines ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    bin_dir = Path(sys.executable).parent
    log_path = workdir / "processes.log"
    log_file = log_path.open("w")
    print(f"API and worker logs: {log_path}", flush=True)
    api = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "--config", "python:api.gunicorn_conf", "api:create_app()"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [str(bin_dir / "ledgerq"), "worker"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    sampler = RssSampler({"api": api.pid, "worker": worker.pid})
    sampler.start()
    try:
        base = f"http://127.0.0.1:{args.port}"
        wait_http(base + "/healthz")
        time.sleep(2)  # let the worker processes start consuming
        from api.cli.batch import Client, MultipartFile, _client

        client: Client = _client(base, None, "bench-finance", password)
        body = MultipartFile({"mode": args.mode}, csv_path)
        t0 = time.perf_counter()
        batch = client.request(
            "POST",
            "/batches",
            body=body,
            headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
        )
        t_accepted = time.perf_counter() - t0
        t_validated = None
        while batch["status"] not in ("completed", "completed_with_errors", "failed", "cancelled"):
            time.sleep(0.25)
            batch = client.request("GET", f"/batches/{batch['id']}")
            if t_validated is None and batch["status"] not in ("received", "validating"):
                t_validated = time.perf_counter() - t0
        elapsed = time.perf_counter() - t0
    finally:
        sampler.stop.set()
        for proc in (api, worker):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in (api, worker):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)

    from db.ledger.verify import verify_ledger
    from db.session import unit_of_work

    with unit_of_work() as uow:
        problems = verify_ledger(uow.session)
    mib = 1024 * 1024
    print()
    print(f"lines                 {batch['total_items']} ({batch['counts']})")
    print(f"status                {batch['status']}")
    print(f"upload -> 202         {t_accepted:.1f} s")
    if t_validated is not None:
        print(f"upload -> validated   {t_validated:.1f} s")
    print(f"upload -> all final   {elapsed:.1f} s")
    print(f"throughput            {batch['total_items'] / elapsed:,.0f} lines/s")
    for name in ("api", "worker"):
        print(
            f"peak RSS {name:<7}      largest process {sampler.peak_single[name] / mib:.0f} MiB, "
            f"all its processes {sampler.peak_total[name] / mib:.0f} MiB"
        )
    print(f"ledger verify         {'OK' if not problems else problems[:5]}")
    print(f"load average          {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    if not args.keep:
        from db.session import dispose_engines

        dispose_engines()
        with psycopg.connect(args.server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    csv_path.unlink()


if __name__ == "__main__":
    main()
