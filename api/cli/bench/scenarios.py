"""The scenarios of `ledgerq bench`. Each one measures its baseline first (on the same
server, just before its own load), runs against a fresh database and its own stack, and
returns an `Outcome`: figures with their ratios, the baselines, details and notes."""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg

from api.cli.bench import floor as floor_app
from api.cli.bench import load, seed
from api.cli.bench.analytics import analytics
from api.cli.bench.baseline import Baselines, libpq_url
from api.cli.bench.report import Outcome
from api.cli.bench.stack import CpuMeter, RssSampler, Run, Stack
from api.cli.bench.stats import percentiles, trend

FULL_STACK = ("web", "worker", "scheduler")
MIB = 2**20


@dataclass
class Options:
    clients: int = 16  # concurrent connections of the main load
    load_processes: int = 2  # processes of the load generator
    duration: float = 60.0  # e2e and hot
    accept_seconds: float = 30.0
    poll_seconds: float = 20.0  # each read
    probe_seconds: float = 5.0  # the load generator's own ceiling (/healthz)
    users: int = 16
    accounts_per_user: int = 4
    backlog: int = 20_000
    poll_transactions: int = 2_000
    longpoll_seconds: float = 20.0  # each phase
    longpoll_rate: float = 40.0  # the other clients' requests/s (open loop)
    waiters: int = 200
    waiters_per_user: int = 10
    batch_lines: int = 100_000
    batch_payers: int = 20
    batch_payees: int = 5_000
    batch_mode: str = "independent"
    batch_bad_every: int = 0
    soak_seconds: float = 600.0
    soak_fraction: float = 0.7
    soak_interval: float = 10.0
    capacity_probe_seconds: float = 20.0
    drain_timeout: float = 900.0  # the longest wait for a backlog to empty
    analytics_transactions: int = 1_000_000
    analytics_calls: int = 200

    @classmethod
    def quick(cls) -> dict[str, Any]:
        """A smoke run: every scenario in a couple of minutes, figures meaningless."""
        return {
            "clients": 4,
            "duration": 3.0,
            "accept_seconds": 3.0,
            "poll_seconds": 2.0,
            "probe_seconds": 1.0,
            "users": 4,
            "accounts_per_user": 2,
            "backlog": 300,
            "poll_transactions": 100,
            "longpoll_seconds": 3.0,
            "longpoll_rate": 10.0,
            "waiters": 20,
            "batch_lines": 2_000,
            "batch_payers": 5,
            "batch_payees": 200,
            "soak_seconds": 10.0,
            "soak_interval": 1.0,
            "capacity_probe_seconds": 3.0,
            "drain_timeout": 120.0,
            "analytics_transactions": 20_000,
            "analytics_calls": 20,
        }


@dataclass
class Bench:
    run: Run
    baselines: Baselines
    options: Options
    stack_env: dict[str, str]
    done: dict[str, Outcome] = field(default_factory=dict)

    @contextlib.contextmanager
    def stack(
        self,
        url: str,
        name: str,
        processes: tuple[str, ...],
        out: Outcome,
        worker_args: list[str] | None = None,
    ) -> Iterator[Stack]:
        stack = Stack(self.run, url, name, self.stack_env)
        out.details["logs"] = str(stack.log_path)
        try:
            for process in processes:
                stack.start(process, worker_args if process == "worker" else None)
            out.details["commands"] = dict(stack.commands)
            if {"web", "floor"} & set(processes):
                stack.wait_web()
            if "worker" in processes:
                stack.wait_workers()
            yield stack
        finally:
            stack.stop()


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --- measuring in the database ------------------------------------------------------


class Db:
    """Read-only probes of the scenario's database, in plain SQL; times come back on
    this machine's clock (the server's clock offset is measured once)."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg.connect(libpq_url(url), autocommit=True)
        before = time.time()
        row = self.connection.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        after = time.time()
        self.offset = float(row[0]) - (before + after) / 2 if row else 0.0

    def close(self) -> None:
        self.connection.close()

    def scalar(self, sql: str, *args: Any) -> Any:
        row = self.connection.execute(sql, args).fetchone()
        return row[0] if row else None

    def pending(self) -> int:
        return int(self.scalar("SELECT count(*) FROM transactions WHERE status = 'pending'"))

    def now(self) -> float:
        return float(self.scalar("SELECT extract(epoch FROM clock_timestamp())::float8")) - self.offset

    def statuses(self, since: float = 0.0) -> dict[str, int]:
        rows = self.connection.execute(
            "SELECT status, count(*) FROM transactions WHERE type = 'transfer' "
            "AND created_at >= to_timestamp(%s) GROUP BY status",
            (since + self.offset,),
        ).fetchall()
        return {status: int(n) for status, n in rows}

    def completed_between(self, start: float, end: float) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM transactions WHERE type = 'transfer' AND status = 'completed' "
                "AND completed_at >= to_timestamp(%s) AND completed_at < to_timestamp(%s)",
                start + self.offset,
                end + self.offset,
            )
        )

    def completed_at(self, ids: list[str]) -> dict[str, float]:
        rows = self.connection.execute(
            "SELECT id::text, extract(epoch FROM completed_at)::float8 FROM transactions "
            "WHERE id = ANY(%s::uuid[]) AND status = 'completed'",
            (ids,),
        ).fetchall()
        return {tx_id: float(at) - self.offset for tx_id, at in rows}

    def first_completed(self) -> float | None:
        value = self.scalar(
            "SELECT extract(epoch FROM min(completed_at))::float8 FROM transactions "
            "WHERE type = 'transfer' AND completed_at IS NOT NULL"
        )
        return float(value) - self.offset if value is not None else None

    def transfers_by_creator(self) -> dict[uuid.UUID, list[str]]:
        out: dict[uuid.UUID, list[str]] = {}
        for tx_id, creator in self.connection.execute(
            "SELECT id::text, created_by FROM transactions WHERE type = 'transfer' AND status = 'completed'"
        ):
            out.setdefault(creator, []).append(tx_id)
        return out

    def wait_drained(self, timeout: float, stall: float = 60.0) -> float | None:
        """Until no transfer is pending; the moment it was seen (None: gave up, because
        nothing moved for `stall` seconds or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        last, last_change = None, time.monotonic()
        while time.monotonic() < deadline:
            pending = self.pending()
            if pending == 0:
                return self.now()
            if pending != last:
                last, last_change = pending, time.monotonic()
            elif time.monotonic() - last_change > stall:
                return None
            time.sleep(0.1)
        return None


def verify(out: Outcome) -> None:
    from db.ledger.verify import verify_ledger
    from db.session import unit_of_work

    with unit_of_work() as uow:
        problems = verify_ledger(uow.session)
    out.details["ledger_verify"] = "OK" if not problems else problems[:20]
    if problems:
        out.notes.append(f"LEDGER VERIFY FAILED ({len(problems)} problems): these figures do not count")


# --- load ----------------------------------------------------------------------------


def load_users(
    customers: list[seed.Customer], transactions: dict[uuid.UUID, list[str]] | None = None
) -> list[load.User]:
    return [
        load.User(c.token, [str(a) for a in c.accounts], list((transactions or {}).get(c.id, [])))
        for c in customers
    ]


def drive(
    bench: Bench, stack: Stack, kind: str, users: list[load.User], **job: Any
) -> tuple[float, load.Result]:
    """One load over the bench's load processes; its common start (wall clock) and the
    merged result."""
    threads = job.pop("threads", bench.options.clients)
    processes = job.pop("processes", bench.options.load_processes)
    template = load.Job(base_url=stack.url, kind=kind, users=users, threads=threads, **job)
    start, results = load.run(load.split(template, processes))
    return start, load.merge(results)


def window(result: load.Result, start: float, seconds: float) -> dict[str, Any]:
    """Requests sent in [start, start + seconds): counts by status and latencies (ms)."""
    end = start + seconds
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    for sent, latency, status in zip(result.sent, result.latency, result.status, strict=True):
        if start <= sent < end:
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(latency * 1000)
    return {"statuses": statuses, "count": len(latencies), **percentiles(latencies)}


def ok_count(summary: dict[str, Any], codes: tuple[int, ...] = (200, 202)) -> int:
    return sum(n for status, n in summary["statuses"].items() if status in codes)


def errors_of(summary: dict[str, Any], codes: tuple[int, ...] = (200, 202)) -> int:
    return summary["count"] - ok_count(summary, codes)


def client_ceiling(bench: Bench, stack: Stack, out: Outcome) -> float:
    """What the load generator pushes against /healthz (the cheapest route) with the
    same processes and threads: the most any scenario's figure can be."""
    seconds = bench.options.probe_seconds
    meter = CpuMeter(stack)
    meter.start()
    start, result = drive(bench, stack, "healthz", [load.User("", [])], duration=seconds)
    meter.stop()
    summary = window(result, start, seconds)
    rate = ok_count(summary, (200,)) / seconds
    out.add("load generator ceiling (/healthz)", rate, "req/s")
    answered = sum(1 for status in result.status if status == 200)
    # The web tier: the API's `web` processes, or the `floor` scenario's stand-in.
    web = meter.seconds.get("web") or meter.seconds.get("floor")
    if answered and web:
        # The web tier's floor: gunicorn, gevent, Flask and the app's own request hooks
        # (request id, access log, metrics) around a route that does nothing.
        out.add("web CPU per /healthz request (the framework's floor)", web * 1000 / answered, "ms")
    out.details["healthz"] = summary
    return rate


def note_if_client_bound(out: Outcome, rate: float | None, ceiling: float) -> None:
    if rate and ceiling and rate > 0.5 * ceiling:
        out.notes.append(
            f"{rate:,.0f} req/s is more than half of what the load generator pushes against "
            f"/healthz ({ceiling:,.0f}/s): the client may be limiting this figure"
        )


def tpcb(bench: Bench, out: Outcome) -> None:
    say("baseline: pgbench TPC-B-like, 8 clients ...")
    out.baselines["tpcb"] = bench.baselines.tpcb()


# --- scenarios -----------------------------------------------------------------------


def accept(bench: Bench) -> Outcome:
    """The API alone (no worker consumes): 202s per second and their latency."""
    o = bench.options
    out = Outcome("accept")
    tpcb(bench, out)
    with bench.run.database("accept") as url:
        pop = seed.population(o.users, o.accounts_per_user)
        with bench.stack(url, "accept", ("web",), out) as stack:
            seed.log_in(stack.url, pop.customers)
            _transfers_alone(bench, stack, pop, out, "accept")
    return out


def _transfers_alone(
    bench: Bench, stack: Stack, pop: seed.Population, out: Outcome, name: str
) -> list[load.User]:
    """`accept`'s load (closed loop, POST /transactions/transfer for the bench's
    duration) against `stack`, with its figures; the load's users."""
    o = bench.options
    ceiling = client_ceiling(bench, stack, out)
    say(f"{name}: {o.clients} connections, {o.accept_seconds:g} s of POST /transactions/transfer ...")
    users = load_users(pop.customers)
    meter = CpuMeter(stack)
    meter.start()
    start, result = drive(
        bench, stack, "transfer", users, duration=o.accept_seconds, destinations=_ids(pop.all_accounts)
    )
    meter.stop()
    summary = window(result, start, o.accept_seconds)
    accepted = ok_count(summary, (202,)) / o.accept_seconds
    out.add("accepted/s", accepted, "/s", "tpcb")
    _latency_figures(out, "accept", summary)
    out.add("non-202 answers", errors_of(summary, (202,)), "")
    out.details["requests"] = summary
    out.details["errors"] = result.errors
    note_if_client_bound(out, accepted, ceiling)
    _cpu_figures(out, meter, sum(1 for status in result.status if status == 202), "accepted transfer")
    return users


def floor(bench: Bench) -> Outcome:
    """The fixed stack's floor (api/cli/bench/floor.py): the same gunicorn settings, load
    generator and connections as `accept` and `poll`, serving an app that does only the
    I/O an accepted transfer and a status read need. Its ratios bound what the real API
    can reach on this machine."""
    from db.core import jwt_codec
    from db.core.config import get_settings

    o = bench.options
    out = Outcome("floor")
    tpcb(bench, out)
    with bench.run.database("floor") as url:
        pop = seed.population(o.users, o.accounts_per_user)
        with psycopg.connect(libpq_url(url), autocommit=True) as connection:
            connection.execute(floor_app.DDL)
        settings = get_settings()
        for customer in pop.customers:  # the floor has no login: tokens as /auth/login signs them
            customer.token = jwt_codec.encode(settings, typ="access", subject=customer.id, ttl_s=7200)
        with bench.stack(url, "floor", ("floor",), out) as stack:
            _transfers_alone(bench, stack, pop, out, "floor")
            with psycopg.connect(libpq_url(url)) as connection:
                created: dict[uuid.UUID, list[str]] = dict(
                    connection.execute(
                        f"SELECT created_by, array_agg(id::text) FROM {floor_app.TABLE} GROUP BY created_by"
                    ).fetchall()
                )
            readers = load_users(pop.customers, created)
            readers = [u for u in readers if u.transactions]
            say(f"floor: {o.clients} connections, {o.poll_seconds:g} s of GET /transactions/{{id}} ...")
            start, result = drive(bench, stack, "get", readers, duration=o.poll_seconds)
            summary = window(result, start, o.poll_seconds)
            rate = ok_count(summary, (200,)) / o.poll_seconds
            out.add("GET /transactions/{id} /s", rate, "/s", "tpcb")
            out.add("GET /transactions/{id} p99", summary["p99"], "ms")
            out.add("GET /transactions/{id} non-200 answers", errors_of(summary, (200,)), "")
            out.details["get"] = summary
    return out


def apply(bench: Bench) -> Outcome:
    """The workers alone, draining a backlog recorded (and enqueued) before they start."""
    o = bench.options
    out = Outcome("apply")
    tpcb(bench, out)
    with bench.run.database("apply") as url:
        pop = seed.population(o.users, o.accounts_per_user)
        say(f"apply: recording a backlog of {o.backlog:,} transfers ...")
        t0 = time.perf_counter()
        seed.backlog(pop, o.backlog)
        out.details["backlog_seconds"] = round(time.perf_counter() - t0, 1)
        db = Db(url)
        try:
            pending = db.pending()
            if pending != o.backlog:
                raise RuntimeError(f"backlog has {pending} pending transfers, not {o.backlog}")
            with bench.stack(url, "apply", ("worker",), out) as stack:
                launched = time.time()
                sampler = RssSampler(stack)
                sampler.start()
                meter = CpuMeter(stack)
                meter.start()
                say("apply: workers started, draining ...")
                done = db.wait_drained(o.drain_timeout)
                meter.stop()
                sampler.stop()
            first = db.first_completed()
            statuses = db.statuses()
        finally:
            db.close()
        if done is None or first is None:
            out.notes.append(f"the backlog did not drain (statuses {statuses})")
            out.add("applied/s", None, "/s", "tpcb")
        else:
            final = sum(n for status, n in statuses.items() if status != "pending")
            out.add("applied/s", final / max(done - first, 1e-6), "/s", "tpcb")
            out.add("drain time", done - first, "s")
            out.add("worker start-up (launch to first completion)", first - launched, "s")
            _cpu_figures(out, meter, final, "applied transfer")
        out.add("failed or dead-lettered", sum(n for s, n in statuses.items() if s != "completed"), "")
        _rss_figures(out, sampler)
        out.details["statuses"] = statuses
        verify(out)
    return out


def e2e(bench: Bench, hot: bool = False) -> Outcome:
    """API, workers and scheduler under sustained closed-loop load; then (uniform only)
    an open-loop phase at 70 % of the completed/s just measured, for accept latency at
    a load the stack sustains."""
    o = bench.options
    name = "hot" if hot else "e2e"
    out = Outcome(name)
    tpcb(bench, out)
    if hot and "e2e" in bench.done and bench.done["e2e"].figure("completed/s during load"):
        out.baselines["e2e"] = {
            "name": "uniform e2e",
            "value": bench.done["e2e"].figure("completed/s during load"),
            "unit": "completed/s",
        }
    with bench.run.database(name) as url:
        pop = seed.population(o.users, o.accounts_per_user)
        with bench.stack(url, name, FULL_STACK, out) as stack:
            seed.log_in(stack.url, pop.customers)
            seed.wait_until_ready(
                stack.url, pop.customers[0], pop.customers[1 % len(pop.customers)].accounts[0]
            )
            ceiling = client_ceiling(bench, stack, out)
            db = Db(url)
            try:
                users = load_users(pop.customers)
                extra = {"hot_account": str(pop.merchant)} if hot else {}
                what = "every transfer into one account" if hot else "random pairs"
                say(f"{name}: {o.clients} connections, {o.duration:g} s, {what} ...")
                sampler = RssSampler(stack)
                sampler.start()
                meter = CpuMeter(stack)
                meter.start()
                start, result = drive(
                    bench,
                    stack,
                    "transfer",
                    users,
                    duration=o.duration,
                    destinations=_ids(pop.all_accounts),
                    **extra,
                )
                drained = db.wait_drained(o.drain_timeout)
                meter.stop()
                sampler.stop()
                summary = window(result, start, o.duration)
                accepted = ok_count(summary, (202,)) / o.duration
                completed_in_window = db.completed_between(start, start + o.duration) / o.duration
                out.add("accepted/s", accepted, "/s", "tpcb")
                fig = out.add("completed/s during load", completed_in_window, "/s", "tpcb")
                if hot and "e2e" in out.baselines:
                    out.add("completed/s during load vs uniform e2e", fig.value, "/s", "e2e")
                created = [
                    (tx_id, sent) for tx_id, sent in result.created if start <= sent < start + o.duration
                ]
                if drained is not None:
                    out.add(
                        "completed/s incl. drain", len(created) / max(drained - start, 1e-6), "/s", "tpcb"
                    )
                else:
                    out.notes.append("the backlog did not drain after the load")
                _latency_figures(out, "accept", summary)
                _completion_figures(out, db, created)
                _cpu_figures(out, meter, len(result.created), "transfer (accepted and applied)")
                out.add("non-202 answers", errors_of(summary, (202,)), "")
                out.details["requests"] = summary
                out.details["errors"] = result.errors
                out.details["statuses"] = db.statuses(start)
                note_if_client_bound(out, accepted, ceiling)
                if not hot and completed_in_window > 0:
                    _sustained_phase(bench, stack, db, out, users, pop, completed_in_window)
            finally:
                db.close()
        _rss_figures(out, sampler)
        verify(out)
    return out


def _sustained_phase(
    bench: Bench,
    stack: Stack,
    db: Db,
    out: Outcome,
    users: list[load.User],
    pop: seed.Population,
    capacity: float,
) -> None:
    o = bench.options
    rate = 0.7 * capacity
    seconds = max(o.duration / 2, 1.0)
    say(f"e2e: open loop at 70 % of that, {rate:,.0f} transfers/s for {seconds:g} s ...")
    start, result = drive(
        bench,
        stack,
        "transfer",
        users,
        duration=seconds,
        rate=rate,
        destinations=_ids(pop.all_accounts),
        threads=max(o.clients, 32),
    )
    db.wait_drained(o.drain_timeout)
    summary = window(result, start, seconds)
    out.add("at 70 %: offered/s", rate, "/s", "tpcb")
    out.add("at 70 %: accepted/s", ok_count(summary, (202,)) / seconds, "/s", "tpcb")
    out.add("at 70 %: completed/s", db.completed_between(start, start + seconds) / seconds, "/s", "tpcb")
    _latency_figures(out, "at 70 %: accept", summary)
    created = [(tx_id, sent) for tx_id, sent in result.created if start <= sent < start + seconds]
    _completion_figures(out, db, created, prefix="at 70 %: ")
    out.details["sustained"] = {
        "rate": rate,
        "seconds": seconds,
        "requests": summary,
        "behind": result.behind,
    }


def hot(bench: Bench) -> Outcome:
    return e2e(bench, hot=True)


def poll(bench: Bench) -> Outcome:
    """Reads: GET /transactions/{id} and GET /balances/current?account_id=, closed loop."""
    o = bench.options
    out = Outcome("poll")
    tpcb(bench, out)
    say("baseline: pgbench select-only, 8 clients ...")
    out.baselines["select"] = bench.baselines.select_only()
    with bench.run.database("poll") as url:
        pop = seed.population(o.users, o.accounts_per_user)
        with bench.stack(url, "poll", FULL_STACK, out) as stack:
            seed.log_in(stack.url, pop.customers)
            seed.wait_until_ready(
                stack.url, pop.customers[0], pop.customers[1 % len(pop.customers)].accounts[0]
            )
            ceiling = client_ceiling(bench, stack, out)
            db = Db(url)
            try:
                say(f"poll: {o.poll_transactions:,} transfers to read ...")
                drive(
                    bench,
                    stack,
                    "transfer",
                    load_users(pop.customers),
                    count=o.poll_transactions,
                    destinations=_ids(pop.all_accounts),
                )
                db.wait_drained(o.drain_timeout)
                users = load_users(pop.customers, db.transfers_by_creator())
            finally:
                db.close()
            users = [u for u in users if u.transactions]
            for kind, label in (("get", "GET /transactions/{id}"), ("balance", "GET /balances/current")):
                say(f"poll: {o.clients} connections, {o.poll_seconds:g} s of {label} ...")
                meter = CpuMeter(stack)
                meter.start()
                start, result = drive(bench, stack, kind, users, duration=o.poll_seconds)
                meter.stop()
                summary = window(result, start, o.poll_seconds)
                rate = ok_count(summary, (200,)) / o.poll_seconds
                out.add(f"{label} /s", rate, "/s", "tpcb")
                out.add(f"{label} /s vs select-only", rate, "/s", "select")
                out.add(f"{label} p50", summary["p50"], "ms")
                out.add(f"{label} p99", summary["p99"], "ms")
                out.add(f"{label} non-200 answers", errors_of(summary, (200,)), "")
                out.details[kind] = summary
                note_if_client_bound(out, rate, ceiling)
                answered = sum(1 for status in result.status if status == 200)
                _cpu_figures(out, meter, answered, f"{label} request", prefix=f"{label}: ", unit="request")
        verify(out)
    return out


def longpoll(bench: Bench) -> Outcome:
    """Other clients' latency with and without `waiters` concurrent ?wait=30 long-polls
    on transfers that never finish (scheduled for tomorrow). The other clients' load is
    open loop (due times fixed), so a stall shows as latency, not as fewer requests."""
    o = bench.options
    out = Outcome("longpoll")
    with bench.run.database("longpoll") as url:
        pop = seed.population(o.users, o.accounts_per_user)
        n_waiter_users = max(1, math.ceil(o.waiters / o.waiters_per_user))
        waiter_people = seed.users(n_waiter_users, prefix="waiter")
        for person in waiter_people:
            person.accounts = seed.accounts(person.principal, 1)
        finance = pop.finance
        from db.core.principal import Principal

        seed.fund(
            Principal(id=finance.id, role="finance", username=finance.username),
            [p.accounts[0] for p in waiter_people],
        )
        with bench.stack(url, "longpoll", FULL_STACK, out) as stack:
            seed.log_in(stack.url, pop.customers + waiter_people)
            seed.wait_until_ready(
                stack.url, pop.customers[0], pop.customers[1 % len(pop.customers)].accounts[0]
            )
            db = Db(url)
            try:
                drive(
                    bench,
                    stack,
                    "transfer",
                    load_users(pop.customers),
                    count=10 * len(pop.customers),
                    destinations=_ids(pop.all_accounts),
                )
                db.wait_drained(o.drain_timeout)
                users = load_users(pop.customers, db.transfers_by_creator())
            finally:
                db.close()
            waiters = [
                load.User(
                    p.token, [str(p.accounts[0])], [seed.scheduled_transfer(stack.url, p, pop.merchant)]
                )
                for p in waiter_people
            ]
            normal: dict[str, Any] = {
                "duration": o.longpoll_seconds,
                "rate": o.longpoll_rate,
                "destinations": _ids(pop.all_accounts),
                "timeout": 120.0,
            }
            say(f"longpoll: other clients alone, {o.longpoll_rate:g} req/s for {o.longpoll_seconds:g} s ...")
            start, alone = drive(bench, stack, "mixed", users, **normal)
            summary_alone = window(alone, start, o.longpoll_seconds)
            out.baselines["alone"] = {
                "name": "p99 without waiters",
                "value": summary_alone["p99"],
                "unit": "ms",
            }
            say(f"longpoll: the same with {o.waiters} waiters (?wait=30) ...")
            settle = 3.0
            jobs = load.split(
                load.Job(
                    base_url=stack.url, kind="mixed", users=users, threads=o.clients, delay=settle, **normal
                ),
                o.load_processes,
            )
            jobs.append(
                load.Job(
                    base_url=stack.url,
                    kind="wait",
                    users=waiters,
                    threads=o.waiters,
                    duration=settle + o.longpoll_seconds,
                    wait_seconds=30,
                    timeout=90.0,
                )
            )
            start, results = load.run(jobs)
            loaded = load.merge(results[:-1])
            waited = results[-1]
            summary_loaded = window(loaded, start + settle, o.longpoll_seconds)
            out.add("other clients p99 alone", summary_alone["p99"], "ms")
            out.add("other clients p99 with waiters", summary_loaded["p99"], "ms", "alone")
            out.add("other clients p50 alone", summary_alone["p50"], "ms")
            out.add("other clients p50 with waiters", summary_loaded["p50"], "ms")
            out.add("other clients errors alone", errors_of(summary_alone), "")
            out.add("other clients errors with waiters", errors_of(summary_loaded), "")
            phase = window(waited, start, settle + o.longpoll_seconds)
            held = sum(
                latency
                for latency, status in zip(waited.latency, waited.status, strict=True)
                if status == 200
            ) / (settle + o.longpoll_seconds)
            out.add("long-polls held at once (mean)", held, "")
            out.add("long-polls refused (429)", phase["statuses"].get(429, 0), "")
            out.details.update(
                alone=summary_alone, loaded=summary_loaded, waiters=phase, errors=loaded.errors
            )
        verify(out)
    return out


def batch(bench: Bench) -> Outcome:
    """A finance file of `batch_lines` lines from upload to every line final."""
    from api.cli.batch import Client, MultipartFile
    from db.core.principal import Principal

    o = bench.options
    out = Outcome("batch")
    with bench.run.database("batch") as url:
        say(f"batch: {o.batch_payers} funded payers, {o.batch_payees:,} payees ...")
        finance = seed.users(1, role="finance")[0]
        principal = Principal(id=finance.id, role="finance", username=finance.username)
        payers = seed.accounts(principal, o.batch_payers)
        payees = seed.accounts(principal, o.batch_payees)
        seed.fund(principal, payers)
        say("baseline: set-based posting (pgbench -f setbased.sql, 4 clients) on a copy ...")
        out.baselines["setbased"] = _setbased_on_copy(bench, url, payers, payees, finance.id)
        path = bench.run.workdir / f"batch-{o.batch_lines}.csv"
        _write_batch_file(path, o, payers, payees)
        with bench.stack(url, "batch", FULL_STACK, out) as stack:
            seed.log_in(stack.url, [finance])
            client = Client(stack.url, finance.token)
            sampler = RssSampler(stack)
            sampler.start()
            say(f"batch: uploading {o.batch_lines:,} lines ...")
            body = MultipartFile({"mode": o.batch_mode}, path)
            t0 = time.perf_counter()
            record = client.request(
                "POST",
                "/batches",
                body=body,
                headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
            )
            accepted = time.perf_counter() - t0
            validated = None
            while record["status"] not in ("completed", "completed_with_errors", "failed", "cancelled"):
                time.sleep(0.25)
                record = client.request("GET", f"/batches/{record['id']}")
                if validated is None and record["status"] not in ("received", "validating"):
                    validated = time.perf_counter() - t0
                if time.perf_counter() - t0 > o.drain_timeout:
                    raise RuntimeError(f"the batch is not final after {o.drain_timeout:.0f} s: {record}")
            elapsed = time.perf_counter() - t0
            sampler.stop()
        path.unlink(missing_ok=True)
        out.add("lines/s (upload to all final)", record["total_items"] / elapsed, "/s", "setbased")
        out.add("upload to 202", accepted, "s")
        out.add("upload to validated", validated, "s")
        out.add("upload to all final", elapsed, "s")
        _rss_figures(out, sampler)
        out.details.update(
            batch_status=record["status"], counts=record.get("counts"), lines=record["total_items"]
        )
        if record["status"] not in ("completed", "completed_with_errors"):
            out.notes.append(f"the batch ended {record['status']}")
        verify(out)
    return out


def soak(bench: Bench) -> Outcome:
    """`soak_fraction` (70 %) of the e2e capacity for `soak_seconds`: RSS of every
    process and the pending backlog over time, each with a trend verdict."""
    o = bench.options
    out = Outcome("soak")
    tpcb(bench, out)
    with bench.run.database("soak") as url:
        pop = seed.population(o.users, o.accounts_per_user)
        with bench.stack(url, "soak", FULL_STACK, out) as stack:
            seed.log_in(stack.url, pop.customers)
            seed.wait_until_ready(
                stack.url, pop.customers[0], pop.customers[1 % len(pop.customers)].accounts[0]
            )
            users = load_users(pop.customers)
            destinations = _ids(pop.all_accounts)
            db = Db(url)
            try:
                capacity, source = _capacity(bench, stack, db, users, destinations)
                out.baselines["capacity"] = {
                    "name": f"e2e capacity ({source})",
                    "value": capacity,
                    "unit": "completed/s",
                }
                rate = o.soak_fraction * capacity
                say(f"soak: {rate:,.0f} transfers/s for {o.soak_seconds:g} s ...")
                sampler = RssSampler(stack, interval=o.soak_interval, keep_series=True)
                backlog: list[tuple[float, int]] = []
                stop = threading.Event()
                watcher = threading.Thread(
                    target=_watch_backlog, args=(url, o.soak_interval, backlog, stop), daemon=True
                )
                sampler.start()
                watcher.start()
                try:
                    start, result = drive(
                        bench,
                        stack,
                        "transfer",
                        users,
                        duration=o.soak_seconds,
                        rate=rate,
                        destinations=destinations,
                        threads=max(o.clients, 32),
                    )
                finally:
                    stop.set()
                    sampler.stop()
                    watcher.join(5)
                drained = db.wait_drained(o.drain_timeout)
                summary = window(result, start, o.soak_seconds)
                out.add("offered/s", rate, "/s", "capacity")
                out.add("accepted/s", ok_count(summary, (202,)) / o.soak_seconds, "/s", "capacity")
                out.add(
                    "completed/s",
                    db.completed_between(start, start + o.soak_seconds) / o.soak_seconds,
                    "/s",
                    "capacity",
                )
                out.add("completed/s vs TPC-B", out.figure("completed/s"), "/s", "tpcb")
                _latency_figures(out, "accept", summary)
                out.add("non-202 answers", errors_of(summary, (202,)), "")
                if drained is None:
                    out.notes.append("the backlog did not drain after the soak")
            finally:
                db.close()
        _soak_trends(out, sampler, backlog, start, rate)
        verify(out)
    return out


def _capacity(
    bench: Bench, stack: Stack, db: Db, users: list[load.User], destinations: list[str]
) -> tuple[float, str]:
    earlier = bench.done.get("e2e")
    if earlier and earlier.figure("completed/s during load"):
        return float(earlier.figure("completed/s during load") or 0), "e2e earlier in this run"
    seconds = bench.options.capacity_probe_seconds
    say(f"soak: measuring capacity, closed loop for {seconds:g} s ...")
    start, _ = drive(bench, stack, "transfer", users, duration=seconds, destinations=destinations)
    db.wait_drained(bench.options.drain_timeout)
    return db.completed_between(start, start + seconds) / seconds, f"{seconds:g} s closed-loop probe"


def _watch_backlog(
    url: str, interval: float, samples: list[tuple[float, int]], stop: threading.Event
) -> None:
    db = Db(url)
    try:
        while not stop.is_set():
            samples.append((time.time(), db.pending()))
            stop.wait(interval)
    finally:
        db.close()


def _soak_trends(
    out: Outcome, sampler: RssSampler, backlog: list[tuple[float, int]], start: float, rate: float
) -> None:
    labels = sorted({label for _, sizes in sampler.series for label in sizes})
    # The first tenth is warm-up: pools fill, caches load, lazily imported code arrives.
    series = [(t, sizes) for t, sizes in sampler.series if t >= start]
    warm = series[len(series) // 10 :]
    trends: dict[str, Any] = {}
    growing = []
    for label in labels:
        points = [(t - start, sizes[label] / MIB) for t, sizes in warm if label in sizes]
        if not points:
            continue
        mean = sum(y for _, y in points) / len(points)
        verdict = trend(points, tolerance=max(8.0, 0.05 * mean))
        trends[label] = {**verdict, "first_mib": points[0][1], "last_mib": points[-1][1]}
        out.add(f"RSS {label} start -> end", points[-1][1], f"MiB (from {points[0][1]:.0f})")
        if verdict["verdict"] == "growing":
            growing.append(label)
    points = [(t - start, float(n)) for t, n in backlog if t >= start]
    backlog_trend = trend(points, tolerance=max(20.0, rate))  # a second of load
    out.add("pending backlog max", max((n for _, n in points), default=None), "")
    out.add("pending backlog last", points[-1][1] if points else None, "")
    out.details["rss_trends"] = trends
    out.details["backlog_trend"] = backlog_trend
    out.details["rss_series_mib"] = [
        {"t": round(t - start, 1), **{k: round(v / MIB, 1) for k, v in sizes.items()}} for t, sizes in series
    ]
    out.details["backlog_series"] = [{"t": round(t, 1), "pending": int(n)} for t, n in points]
    out.notes.append(
        ("RSS growing: " + ", ".join(growing)) if growing else f"RSS flat for all {len(trends)} processes"
    )
    out.notes.append(f"backlog {backlog_trend['verdict']}")


# --- helpers ---------------------------------------------------------------------------


def _ids(ids: list[uuid.UUID]) -> list[str]:
    return [str(i) for i in ids]


def _latency_figures(out: Outcome, prefix: str, summary: dict[str, Any]) -> None:
    for p in ("p50", "p95", "p99"):
        out.add(f"{prefix} {p}", summary[p], "ms")


def _completion_figures(out: Outcome, db: Db, created: list[tuple[str, float]], prefix: str = "") -> None:
    done = db.completed_at([tx_id for tx_id, _ in created])
    latencies = [(done[tx_id] - sent) * 1000 for tx_id, sent in created if tx_id in done]
    ps = percentiles(latencies, (50, 99))
    out.add(f"{prefix}submit to completed p50", ps["p50"], "ms")
    out.add(f"{prefix}submit to completed p99", ps["p99"], "ms")


def _cpu_figures(
    out: Outcome, meter: CpuMeter, done: int, what: str, prefix: str = "", unit: str = "transfer"
) -> None:
    """What one `unit` (a transfer, or a read's request) cost in CPU, by part of the
    machine, and the rate the machine's cores would allow at that cost if they did
    nothing else (the load generator excluded): a ratio target above that ceiling's
    ratio cannot be met by tuning, only by making a `unit` cheaper. `done` is how many
    were done (JSON: `cpu_seconds.done`)."""
    if not done or not meter.seconds:
        return
    cores = psutil.cpu_count() or 1
    parts = {group: seconds for group, seconds in meter.seconds.items() if group != "machine"}
    for group, seconds in sorted(parts.items()):
        out.add(f"CPU per {what}: {group}", seconds * 1000 / done, "ms")
    stack_ms = sum(parts.values()) * 1000 / done
    out.add(f"CPU per {what}: stack total (excl. load generator)", stack_ms, "ms")
    machine = meter.seconds.get("machine", 0.0)
    out.add(f"{prefix}machine CPU busy", 100 * machine / max(meter.elapsed * cores, 1e-9), "%")
    out.add(
        f"{prefix}CPU ceiling: {cores} cores / stack CPU per {unit}",
        cores * 1000 / max(stack_ms, 1e-9),
        "/s",
        "tpcb",
    )
    out.details[f"{prefix}cpu_seconds"] = {
        **meter.seconds,
        "elapsed": meter.elapsed,
        "done": done,
        "unit": unit,
    }


def _rss_figures(out: Outcome, sampler: RssSampler) -> None:
    for group, size in sorted(sampler.peak_group.items()):
        out.add(f"peak RSS {group} (all its processes)", size / MIB, "MiB")
    for label, size in sorted(sampler.peak.items()):
        out.add(f"peak RSS {label}", size / MIB, "MiB")


def _setbased_on_copy(
    bench: Bench, url: str, payers: list[uuid.UUID], payees: list[uuid.UUID], user_id: uuid.UUID
) -> dict[str, Any]:
    """The set-based baseline on a copy (CREATE DATABASE ... TEMPLATE) of the scenario's
    seeded database, so the batch itself runs on untouched data."""
    from sqlalchemy.engine import make_url

    from db.session import dispose_engines

    dispose_engines()  # a template must have no connections
    source = make_url(url).database
    copy_url = bench.run.create_database("setbased")
    copy_name = make_url(copy_url).database
    with psycopg.connect(bench.run.servers.postgres, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{copy_name}"')
        connection.execute(f'CREATE DATABASE "{copy_name}" TEMPLATE "{source}"')
    try:
        return bench.baselines.setbased(copy_url, payers=payers, payees=payees, user_id=user_id)
    finally:
        bench.run.drop_database(copy_url)


def _write_batch_file(path: Path, o: Options, payers: list[uuid.UUID], payees: list[uuid.UUID]) -> None:
    import random

    rng = random.Random(42)
    with path.open("w", newline="") as handle:
        handle.write("from_account_id,to_account_id,amount,currency,reference\n")
        for line in range(1, o.batch_lines + 1):
            amount = f"{rng.randint(1, 9_999)}.{rng.randint(0, 99):02d}"
            if o.batch_bad_every and line % o.batch_bad_every == 0:
                amount = "12.345"  # too many decimals: rejected
            handle.write(f"{rng.choice(payers)},{rng.choice(payees)},{amount},USD,bench-{line}\n")


SCENARIOS: dict[str, Callable[[Bench], Outcome]] = {
    "accept": accept,
    "floor": floor,
    "apply": apply,
    "e2e": e2e,
    "hot": hot,
    "poll": poll,
    "longpoll": longpoll,
    "batch": batch,
    "soak": soak,
    "analytics": analytics,
}
