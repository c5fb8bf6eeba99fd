"""The load generator: a few processes, each a pool of threads, each thread one keep-alive
HTTP/1.1 connection (`http.client`: the standard library's client has the least
overhead per request of the pure-Python clients, and needs nothing installed).

Two ways to drive the API:
- closed loop (`rate=None`): every thread sends its next request as soon as the previous
  answer arrives; this measures capacity;
- open loop (`rate=R`): requests are due at fixed times, R per second per process spread
  over its threads, whatever the server does. Latency is measured from the time a request
  was *due*, not when a free thread got round to it, so a stalled server shows up as
  latency instead of silently lowering the offered rate (coordinated omission).

Only the standard library is imported here: the processes are spawned, and the less they
import the sooner they are ready and the less CPU they take from the server.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import queue
import random
import threading
import time
import uuid
from array import array
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

API = "/api/v1"
# A stale keep-alive connection (closed by the server while idle) fails on first use.
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass
class User:
    token: str
    accounts: list[str]  # the user's own accounts: sources of transfers, balance reads
    transactions: list[str] = field(default_factory=list)  # visible to the user: GET targets


@dataclass
class Job:
    """What one load process does.

    kind: `transfer` (POST /transactions/transfer), `get` (GET /transactions/{id}),
    `balance` (GET /balances/current?account_id=), `healthz`, `mixed` (transfer and get
    alternately), `wait` (GET /transactions/{id}?wait=N on the user's first transaction,
    over and over: a long-poll waiter).
    """

    base_url: str
    kind: str
    users: list[User]
    threads: int
    duration: float | None = None  # seconds, or
    count: int | None = None  # requests in all (closed loop only)
    rate: float | None = None  # requests/s of this process (open loop)
    destinations: list[str] = field(default_factory=list)  # transfer targets (random)
    hot_account: str | None = None  # every transfer credits this account
    wait_seconds: int = 30
    delay: float = 0.0  # seconds after the common start before this job begins
    timeout: float = 60.0
    seed: int = 0


@dataclass
class Result:
    """One process's requests, in columns: `sent` is the wall-clock time (time.time())
    the request was sent (open loop: was due), `latency` seconds, `status` the HTTP
    status (0: no answer: connection error or timeout). `created` holds the id and
    `sent` of every transaction a 202 reported."""

    kind: str
    sent: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))
    status: array = field(default_factory=lambda: array("H"))
    created: list[tuple[str, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    started: float = 0.0  # wall clock of the common start
    behind: int = 0  # open loop: requests sent more than 100 ms after they were due


class _Connection:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = False

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.used = False
            reused = self.used
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                self.used = True
                if response.will_close:
                    self.close()
                return response.status, data
            except _RETRYABLE:
                self.close()
                # Retry once on a connection the server had already closed. Safe for our
                # requests: GETs, and POSTs that carry an Idempotency-Key.
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _headers(token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Connection": "keep-alive"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if extra:
        headers.update(extra)
    return headers


class _Requests:
    """Builds the next request of a job (method, path, body, headers, is_transfer)."""

    def __init__(self, job: Job, rng: random.Random, fixed_user: int | None = None) -> None:
        self.job, self.rng = job, rng
        self.fixed_user = fixed_user
        self.flip = False
        self.prepared = [(user, _headers(user.token)) for user in job.users]
        self.post_headers = [_headers(user.token, {"Content-Type": "application/json"}) for user in job.users]

    def next(self) -> tuple[str, str, bytes | None, dict[str, str], bool]:
        job, rng = self.job, self.rng
        kind = job.kind
        if kind == "healthz":
            return "GET", "/healthz", None, {"Connection": "keep-alive"}, False
        index = self.fixed_user if self.fixed_user is not None else rng.randrange(len(job.users))
        user, headers = self.prepared[index]
        if kind == "mixed":
            self.flip = not self.flip
            kind = "transfer" if self.flip or not user.transactions else "get"
        if kind == "transfer":
            source = rng.choice(user.accounts)
            target = job.hot_account or rng.choice(job.destinations)
            while target == source:
                target = rng.choice(job.destinations)
            amount = f"{rng.randint(0, 9)}.{rng.randint(1, 99):02d}"
            body = (
                f'{{"from_account_id":"{source}","to_account_id":"{target}",'
                f'"amount":"{amount}","currency":"USD"}}'
            ).encode()
            post_headers = dict(self.post_headers[index])
            post_headers["Idempotency-Key"] = uuid.uuid4().hex
            return "POST", f"{API}/transactions/transfer", body, post_headers, True
        if kind == "get":
            return "GET", f"{API}/transactions/{rng.choice(user.transactions)}", None, headers, False
        if kind == "balance":
            return (
                "GET",
                f"{API}/balances/current?account_id={rng.choice(user.accounts)}",
                None,
                headers,
                False,
            )
        if kind == "wait":
            path = f"{API}/transactions/{user.transactions[0]}?wait={job.wait_seconds}"
            return "GET", path, None, headers, False
        raise ValueError(f"unknown job kind {kind!r}")


def _thread(
    job: Job,
    number: int,
    start_wall: float,
    start_perf: float,
    out: Result,
    lock: threading.Lock,
    quota: list[int],
) -> None:
    parsed = urlsplit(job.base_url)
    connection = _Connection(parsed.hostname or "127.0.0.1", parsed.port or 80, job.timeout)
    rng = random.Random(job.seed * 1000 + number)
    # A waiter parks on its own user's transaction; other threads pick a user at random.
    requests = _Requests(job, rng, number % len(job.users) if job.kind == "wait" else None)
    begin = start_perf + job.delay
    end = begin + job.duration if job.duration is not None else float("inf")
    interval = job.threads / job.rate if job.rate else 0.0
    due = begin + (number / job.threads) * interval  # stagger the threads
    sent, latency, status = array("d"), array("d"), array("H")
    created: list[tuple[str, float]] = []
    errors: dict[str, int] = {}
    behind = 0
    now = time.perf_counter()
    if begin > now:
        time.sleep(begin - now)
    try:
        while True:
            if job.rate:
                if due >= end:
                    break
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                elif now - due > 0.1:
                    behind += 1
                t0 = due
                due += interval
            else:
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                if job.count is not None:
                    with lock:
                        if quota[0] <= 0:
                            break
                        quota[0] -= 1
            method, path, body, headers, is_transfer = requests.next()
            try:
                code, data = connection.request(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                code, data = 0, b""
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
            elapsed = time.perf_counter() - t0
            sent_wall = start_wall + (t0 - start_perf)
            sent.append(sent_wall)
            latency.append(elapsed)
            status.append(code)
            if is_transfer and code in (200, 201, 202):
                try:
                    created.append((json.loads(data)["id"], sent_wall))
                except (ValueError, KeyError):
                    errors["bad_body"] = errors.get("bad_body", 0) + 1
            if job.kind == "wait" and code == 429:
                time.sleep(1.0)  # capped: do not hammer the server while waiting for a slot
    finally:
        connection.close()
        with lock:
            out.sent.extend(sent)
            out.latency.extend(latency)
            out.status.extend(status)
            out.created.extend(created)
            out.behind += behind
            for name, n in errors.items():
                out.errors[name] = out.errors.get(name, 0) + n


def _warm_up(job: Job) -> None:
    """One connection and request before the clock starts (imports, DNS, first connect)."""
    parsed = urlsplit(job.base_url)
    connection = _Connection(parsed.hostname or "127.0.0.1", parsed.port or 80, job.timeout)
    try:
        connection.request("GET", "/healthz", None, {"Connection": "keep-alive"})
    except (OSError, http.client.HTTPException):
        pass
    finally:
        connection.close()


def _process(index: int, job: Job, ready: Any, go: Any, results: Any) -> None:
    _warm_up(job)
    ready.put(True)
    start_wall = go.get()
    # The parent sets the start a little ahead so every process starts together: wait for
    # it. (Starting at once while mapping perf_counter's "now" to that future instant put
    # every send up to 0.2 s late on the wall clock, which made submit-to-completed
    # latencies negative.)
    time.sleep(max(0.0, start_wall - time.time()))
    # Both clocks read at the same moment: wall time for timestamps, perf_counter for gaps.
    start_perf = time.perf_counter() - (time.time() - start_wall)
    out = Result(kind=job.kind, started=start_wall)
    lock = threading.Lock()
    quota = [job.count] if job.count is not None else [0]
    threads = [
        threading.Thread(target=_thread, args=(job, n, start_wall, start_perf, out, lock, quota), daemon=True)
        for n in range(job.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((index, out))


def run(jobs: list[Job], start_timeout: float = 120.0) -> tuple[float, list[Result]]:
    """Run every job in its own process, all starting at the same moment; return that
    moment (wall clock) and the results, in the order of `jobs`."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    gos = [context.Queue() for _ in jobs]
    processes = [
        context.Process(target=_process, args=(index, job, ready, go, results), daemon=True)
        for index, (job, go) in enumerate(zip(jobs, gos, strict=True))
    ]
    for process in processes:
        process.start()
    try:
        for _ in jobs:
            ready.get(timeout=start_timeout)
        start = time.time() + 0.2
        for go in gos:
            go.put(start)
        outs: dict[int, Result] = {}
        while len(outs) < len(jobs):
            try:
                index, out = results.get(timeout=1.0)
                outs[index] = out
            except queue.Empty:
                dead = [p.exitcode for i, p in enumerate(processes) if i not in outs and not p.is_alive()]
                if dead and results.empty():
                    raise RuntimeError(f"a load process died (exit codes {dead})") from None
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return start, [outs[i] for i in range(len(jobs))]


def split(job: Job, processes: int) -> list[Job]:
    """The same load over `processes` processes: users, threads, rate and count shared out."""
    processes = max(1, min(processes, job.threads))
    jobs = []
    for n in range(processes):
        threads = job.threads // processes + (1 if n < job.threads % processes else 0)
        share = threads / job.threads
        users = job.users[n::processes] or job.users
        jobs.append(
            Job(
                **{
                    **job.__dict__,
                    "users": users,
                    "threads": threads,
                    "rate": job.rate * share if job.rate else None,
                    "count": round(job.count * share) if job.count is not None else None,
                    "seed": job.seed * 100 + n,
                }
            )
        )
    if job.count is not None:  # rounding must not lose or add requests
        jobs[-1].count = job.count - sum(j.count or 0 for j in jobs[:-1])
    return jobs


def merge(results: list[Result]) -> Result:
    merged = Result(kind=results[0].kind if results else "", started=results[0].started if results else 0)
    for result in results:
        merged.sent.extend(result.sent)
        merged.latency.extend(result.latency)
        merged.status.extend(result.status)
        merged.created.extend(result.created)
        merged.behind += result.behind
        for name, n in result.errors.items():
            merged.errors[name] = merged.errors.get(name, 0) + n
    return merged
