"""`ledgerq chaos`: random transfers and batches against a real stack while faults are
injected; exits 1 unless nothing was applied twice, every accepted request became final
within the bound, none was dead-lettered (every fault is transient) and verify passes.

    ledgerq chaos                # short: 45 s of load (the test suite runs this)
    ledgerq chaos --long         # 8 minutes of load, faults every 3 s

The stack is the Procfile's own `web`, `worker` and two `scheduler` processes (bench's
stack, api/cli/bench/stack.py) on a fresh database of the PostgreSQL server of
DATABASE_URL (else 127.0.0.1:5432, else embedded) and on an embedded Redis of its own,
which the faults restart and FLUSHALL: a shared Redis is never touched. Faults
(api/cli/chaos/faults.py): SIGKILL of a random worker, SIGSTOP of one past the heartbeat
then SIGCONT, Redis restarted or flushed, the run database's connections terminated; two
schedulers run throughout, and every message is sent twice (the API's, plus one this
process sends for each accepted transfer and batch).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import click

from api.cli import main

# Heartbeat and recovery settings of the chaos stack: a frozen or killed worker's messages
# come back in seconds, not the production minute, so a short run sees many recoveries.
STACK_ENV = {
    "BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
    "BROKER_MAINTENANCE_CHANCE": "100000",
    "SWEEPER_STALE_AFTER_SECONDS": "3",
    "SWEEPER_INTERVAL_SECONDS": "2",
    "LEDGERQ_BATCH_STALE_AFTER_SECONDS": "5",
    "WORKER_MIN_BACKOFF_MS": "100",
    "WORKER_MAX_BACKOFF_MS": "2000",
    "LEDGERQ_BATCH_CHUNK_SIZE": "50",
    "LEDGERQ_BATCH_MESSAGE_BUDGET_SECONDS": "1",
    "WORKER_PROCESSES": "2",
    "WORKER_THREADS": "4",
    "WEB_WORKERS": "2",
}


class Client:
    """HTTP with the run's retries: a request that got no answer (the API was cut off
    from its database or Redis) is sent again with the same Idempotency-Key."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def post(self, path: str, body: Any, token: str, attempts: int = 20) -> tuple[int, Any]:
        key = uuid.uuid4().hex
        status, answer = 0, None
        for _ in range(attempts):
            request = urllib.request.Request(  # noqa: S310 - the run's own local API
                self.base_url + path, data=json.dumps(body).encode(), method="POST"
            )
            request.add_header("Content-Type", "application/json")
            request.add_header("Authorization", f"Bearer {token}")
            request.add_header("Idempotency-Key", key)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    return response.status, json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                status, answer = error.code, json.loads(error.read() or b"null")
                if status < 500:
                    return status, answer
            except (OSError, urllib.error.URLError):
                status, answer = 0, None
            time.sleep(0.5)
        return status, answer


class Load:
    """Client threads sending random transfers, one thread sending batches; every
    accepted one is also sent to the workers a second time."""

    def __init__(self, client: Client, people: dict, *, threads: int, batch_every: float, seed: int) -> None:
        self.client = client
        self.people = people
        self.threads = threads
        self.batch_every = batch_every
        self.seed = seed
        self.transfers: list[str] = []
        self.batches: list[str] = []
        self.refused: dict[int, int] = {}
        self.duplicates_sent = 0
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.threads):
            self._threads.append(threading.Thread(target=self._transfers, args=(n,), daemon=True))
        self._threads.append(threading.Thread(target=self._batches, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(120)

    def _send_twice(self, actor, **kwargs) -> None:
        with contextlib.suppress(Exception):  # Redis may be down right now: the sweeper covers it
            actor.send(**kwargs)
            with self.lock:
                self.duplicates_sent += 1

    def _transfers(self, n: int) -> None:
        from workers.transactions import apply_transaction

        rng = random.Random(self.seed * 1000 + n)
        customers = self.people["customers"]
        every = [a for c in customers for a in c["accounts"]]
        while not self.stopped.is_set():
            customer = rng.choice(customers)
            source = rng.choice(customer["accounts"])
            target = rng.choice([a for a in every if a != source])
            # Mostly small amounts; now and then more than a poor account holds.
            amount = f"{rng.randint(0, 3)}.{rng.randint(1, 99):02d}" if rng.random() < 0.9 else "5000.00"
            body = {"from_account_id": source, "to_account_id": target, "amount": amount, "currency": "USD"}
            status, answer = self.client.post("/api/v1/transactions/transfer", body, customer["token"])
            if status in (200, 202):
                tx_id = str(answer["id"])
                with self.lock:
                    self.transfers.append(tx_id)
                self._send_twice(apply_transaction, transaction_id=tx_id)
            else:
                with self.lock:
                    self.refused[status] = self.refused.get(status, 0) + 1

    def _batches(self) -> None:
        from workers.batches import apply_chunk

        rng = random.Random(self.seed)
        customers = self.people["customers"]
        every = [a for c in customers for a in c["accounts"]]
        while not self.stopped.wait(self.batch_every):
            items = []
            for _ in range(rng.randint(20, 200)):
                source, target = rng.sample(every, 2)
                items.append(
                    {
                        "from_account_id": source,
                        "to_account_id": target,
                        "amount": f"0.{rng.randint(1, 99):02d}",
                        "currency": "USD",
                        "reference": uuid.uuid4().hex[:12],
                    }
                )
            body = {"items": items, "mode": rng.choice(["independent", "independent", "atomic"])}
            status, answer = self.client.post("/api/v1/batches", body, self.people["finance"]["token"])
            if status in (200, 202):
                batch_id = str(answer["id"])
                with self.lock:
                    self.batches.append(batch_id)
                self._send_twice(apply_chunk, batch_id=batch_id, start_line=1)
            else:
                with self.lock:
                    self.refused[status] = self.refused.get(status, 0) + 1


def seed_people(customers: int, accounts_each: int) -> dict:
    """Customers with funded accounts (a few poor ones, so some transfers fail), a
    finance user; access tokens minted with the run's secret."""
    from api.cli.bench import seed
    from api.extensions.auth import issue_access_token
    from db.core.config import get_settings
    from db.core.principal import Principal

    settings = get_settings()
    finance = seed.users(1, role="finance", prefix="chaos")[0]
    people = seed.users(customers, prefix="chaos")
    finance_principal = Principal(id=finance.id, role="finance", username=finance.username)
    for n, person in enumerate(people):
        person.accounts = seed.accounts(person.principal, accounts_each)
        seed.fund(finance_principal, person.accounts, amount="10.00" if n == 0 else "100000.00")

    def token(user_id, role) -> str:
        return issue_access_token(settings, user_id, role)[0]

    return {
        "finance": {"token": token(finance.id, "finance")},
        "customers": [
            {"token": token(p.id, "customer"), "accounts": [str(a) for a in p.accounts]} for p in people
        ],
    }


def terminator(database: str, server: str):
    """pg_terminate_backend of every connection to this run's database (never another's)."""

    def terminate() -> int:
        import psycopg

        with psycopg.connect(server, autocommit=True, connect_timeout=5) as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return len(rows)

    return terminate


@main.command()
@click.option("--long", "long_mode", is_flag=True, help="8 minutes of load, faults every 3 s")
@click.option("--seconds", type=float, default=None, help="seconds of load [45; --long: 480]")
@click.option("--fault-every", type=float, default=None, help="mean seconds between faults [4; --long: 3]")
@click.option(
    "--settle", type=float, default=None, help="bound for every request to be final after the load [120]"
)
@click.option("--clients", type=int, default=6, show_default=True, help="threads sending transfers")
@click.option("--seed", "rng_seed", type=int, default=None, help="random seed [random]")
@click.option(
    "--server", envvar="DATABASE_URL", help="PostgreSQL for the run's database [DATABASE_URL's server]"
)
@click.option("--keep", is_flag=True, help="keep the database and the logs")
def chaos(
    long_mode: bool,
    seconds: float | None,
    fault_every: float | None,
    settle: float | None,
    clients: int,
    rng_seed: int | None,
    server: str | None,
    keep: bool,
) -> None:
    """Random transfers and batches against the real stack under injected faults."""
    from api.cli.bench import _quiet_logging, _server_of
    from api.cli.bench.stack import Run, Servers, Stack, find_servers, new_workdir
    from api.cli.chaos import tally
    from api.cli.chaos.faults import Faults, OwnRedis, Supervisor

    seconds = seconds if seconds is not None else (480.0 if long_mode else 45.0)
    fault_every = fault_every if fault_every is not None else (3.0 if long_mode else 4.0)
    settle = settle if settle is not None else 120.0
    rng_seed = rng_seed if rng_seed is not None else secrets.randbelow(10**6)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("LEDGERQ_ENV", "development")
    os.environ.setdefault("JWT_SECRET", secrets.token_urlsafe(48))
    _quiet_logging()
    workdir = new_workdir()
    redis = OwnRedis(workdir / "redis")  # never the shared one: it is restarted and flushed
    found = find_servers(_server_of(server), redis.url, workdir)
    servers = Servers(found.postgres, redis.url, found.described, [*found.stoppers, redis.stop])
    run = Run(servers, workdir, log_level="INFO", keep=keep)
    click.echo(f"ledgerq chaos: {seconds:.0f} s of load, seed {rng_seed}, logs in {workdir}", err=True)
    stacks: list[Stack] = []
    reasons: list[str] = ["did not finish"]
    try:
        with run.database("chaos") as url:
            from sqlalchemy.engine import make_url

            os.environ.update(STACK_ENV)  # this process's broker and settings too
            from db.core.config import get_settings

            get_settings.cache_clear()
            people = seed_people(customers=8, accounts_each=3)
            stack = Stack(run, url, "chaos", env=STACK_ENV)
            second = Stack(run, url, "chaos-scheduler-2", env=STACK_ENV)
            stacks = [stack, second]
            for process in ("web", "worker", "scheduler"):
                stack.start(process)
            second.start("scheduler")  # two schedulers: the leader lock decides
            stack.wait_web()
            stack.wait_workers()
            supervisor = Supervisor(stacks)
            supervisor.start()
            faults = Faults(
                stack,
                redis,
                terminator(make_url(url).database or "", servers.postgres),
                interval=fault_every,
                heartbeat_s=int(STACK_ENV["BROKER_HEARTBEAT_TIMEOUT_MS"]) / 1000,
                seed=rng_seed,
            )
            import workers.batches  # noqa: F401  (the broker of the run's Redis, before the threads)
            import workers.transactions  # noqa: F401

            load = Load(Client(stack.url), people, threads=clients, batch_every=3.0, seed=rng_seed)
            started = time.monotonic()
            load.start()
            faults.start()
            time.sleep(seconds)
            faults.stop()
            load.stop()
            loaded_s = time.monotonic() - started
            settle_s = tally.wait_final(load.transfers, load.batches, settle)
            supervisor.stop()
            from db.session import dispose_engines

            dispose_engines()  # connections the faults may have cut
            result = tally.read(load.transfers, load.batches)
            click.echo(
                tally.render(
                    result,
                    faults=faults.injected,
                    restarts=supervisor.restarts,
                    settle_s=settle_s,
                    extra={
                        "seed": rng_seed,
                        "load": f"{loaded_s:.0f} s, {clients} clients, fault every ~{fault_every:g} s",
                        "duplicate messages sent": load.duplicates_sent,
                        "refused by the API": dict(sorted(load.refused.items())) or "none",
                        "faults not injected": dict(faults.errors) or "none",
                    },
                )
            )
            reasons = result.verdict()
            if settle_s >= settle:
                reasons.append(f"not final within {settle:.0f} s")
    finally:
        for each in stacks:
            each.stop()
        servers.stop()
        if not keep and not reasons:
            shutil.rmtree(workdir, ignore_errors=True)
    if reasons:
        click.echo(f"chaos FAILED (logs in {workdir}): {'; '.join(reasons)}", err=True)
        sys.exit(1)
