"""`ledgerq up` as a user runs it: a real process tree (supervisord, gunicorn, Dramatiq
workers, the scheduler; embedded PostgreSQL and Redis when no URLs are given), driven
over HTTP on a free port.

Shutdown: `ledgerq up` answers SIGTERM / Ctrl-C by stopping supervisord (which stops
every program gracefully) and then the embedded servers, and exits 0.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest

from db.ops.embedded import EmbeddedRedis, free_port
from tests.fixtures.processes import LEDGERQ, Http, Processes, dramatiq_workers, safe, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"


@pytest.fixture
def procs(tmp_path):
    processes = Processes(tmp_path)
    yield processes
    processes.kill_all()


def start_up(procs: Processes, state_dir: Path, port: int, env=None, remove=()):
    env = {
        "PORT": str(port),
        "WORKER_PROCESSES": "2",
        "WORKER_THREADS": "2",
        "WEB_WORKERS": "2",
        "SWEEPER_INTERVAL_SECONDS": "1",
        # A port of its own: the default 9191 would clash with other runs.
        "WORKER_METRICS_PORT": str(free_port()),
        "SCHEDULER_METRICS_PORT": str(free_port()),
        **(env or {}),
    }
    up = procs.start("up", [LEDGERQ, "up", "--state-dir", str(state_dir)], env=env, remove=remove)
    http = Http(f"http://127.0.0.1:{port}")
    try:
        http.wait_ready(90, up)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{procs.logs()}") from None
    return up, http


def stop_up(procs: Processes, up, sig=signal.SIGTERM, group=False) -> float:
    """Stop like an operator (SIGTERM) or a terminal (Ctrl-C: SIGINT to the foreground
    process group); return how long it took. Nothing of the stack may survive it."""
    started = time.monotonic()
    if group:
        os.killpg(up.pid, sig)
    else:
        up.send_signal(sig)
    try:
        up.wait(timeout=40)
    except Exception:
        raise AssertionError(f"ledgerq up did not exit within 40 s\n{procs.logs()}") from None
    elapsed = time.monotonic() - started
    assert up.returncode == 0, procs.logs()
    survivors = wait_for_nothing_left(procs)
    assert survivors == [], survivors
    return elapsed


def wait_for_nothing_left(procs: Processes, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [f"{p.pid} {' '.join(safe(p.cmdline, []))}" for p in procs.survivors()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def customer(http: Http, name: str) -> dict[str, str]:
    """Register and log in over HTTP; the Authorization header."""
    username = f"{name}-{uuid.uuid4().hex[:8]}"
    status, body = http.post(
        "/api/v1/auth/register",
        {"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert status == 201, body
    return login(http, username)


def login(http: Http, username: str) -> dict[str, str]:
    status, body = http.post("/api/v1/auth/login", {"username": username, "password": PASSWORD})
    assert status == 200, body
    return {"Authorization": f"Bearer {body['access_token']}"}


def open_account(http: Http, headers) -> str:
    status, body = http.post("/api/v1/accounts", {"currency": "USD"}, headers)
    assert status == 201, body
    return body["id"]


def submit(http: Http, kind: str, body: dict, headers) -> str:
    status, tx = http.post(f"/api/v1/transactions/{kind}", {**body, "currency": "USD"}, headers)
    assert status == 202, tx
    assert tx["status"] == "pending"
    return tx["id"]


def final_status(http: Http, tx_id: str, headers, timeout: float = 30) -> str:
    """Long-poll (?wait) until the transaction is final or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        status, tx = http.get(f"/api/v1/transactions/{tx_id}?wait=5", headers)
        assert status == 200, tx
        if tx["status"] not in ("pending", "scheduled") or time.monotonic() > deadline:
            return tx["status"]


def balance_of(http: Http, account_id: str, headers) -> str:
    status, body = http.get(f"/api/v1/balances/current?account_id={account_id}", headers)
    assert status == 200, body
    return body["balance"]


def worker_group(root: psutil.Process, size: int):
    parent, workers = dramatiq_workers(root)
    return (parent, workers) if parent is not None and len(workers) == size else None


def program(root: psutil.Process, marker: str) -> psutil.Process | None:
    """The supervisord program whose command line contains `marker`."""
    for proc in safe(lambda: root.children(recursive=True), []):
        parent = safe(proc.parent, None)
        if parent is not None and "supervisor.supervisord" in safe(parent.cmdline, []):
            if marker in " ".join(safe(proc.cmdline, [])):
                return proc
    return None


def test_up_restarts_a_killed_worker_while_the_api_keeps_serving(procs, tmp_path, make):
    up, http = start_up(procs, tmp_path / "state", free_port())
    alice, bob = customer(http, "alice"), customer(http, "bob")
    # The first finance user is made with `ledgerq users create` in real life; its token
    # is valid here because the stack shares the test's JWT_SECRET and database.
    finance = make.user("finance").headers
    a, b = open_account(http, alice), open_account(http, bob)
    credit = submit(http, "credit", {"account_id": a, "amount": "100.00"}, finance)
    assert final_status(http, credit, finance) == "completed"
    first = submit(http, "transfer", {"from_account_id": a, "to_account_id": b, "amount": "25.00"}, alice)
    assert final_status(http, first, alice) == "completed"

    root = psutil.Process(up.pid)
    parent, workers = wait_for("two Dramatiq worker processes", lambda: worker_group(root, 2), 30)
    web, scheduler = program(root, "gunicorn"), program(root, "ledgerq scheduler")
    assert web is not None and scheduler is not None
    old_pids = {parent.pid, *(w.pid for w in workers)}

    workers[0].kill()  # SIGKILL one worker process: Dramatiq's parent stops the rest and exits
    # Accepted while the worker group is down or restarting: durable, applied later.
    second = submit(http, "transfer", {"from_account_id": a, "to_account_id": b, "amount": "10.00"}, alice)

    def group_restarted():
        # The API answers throughout: liveness, and a read that needs the database.
        assert http.status("/healthz") == 200
        status, tx = http.get(f"/api/v1/transactions/{first}", alice)
        assert (status, tx["status"]) == (200, "completed")
        new_parent, new_workers = dramatiq_workers(root)
        pids = {w.pid for w in new_workers}
        return new_parent is not None and new_parent.pid not in old_pids and len(pids - old_pids) == 2

    wait_for("supervisord to restart the worker group", group_restarted, 40, interval=0.2)
    assert final_status(http, second, alice) == "completed"
    assert balance_of(http, a, alice) == "65.00"
    assert balance_of(http, b, bob) == "35.00"
    # One crash never stops the API or the scheduler.
    assert web.is_running() and scheduler.is_running()
    assert program(root, "gunicorn").pid == web.pid
    assert program(root, "ledgerq scheduler").pid == scheduler.pid

    elapsed = stop_up(procs, up)
    print(f"ledgerq up stopped in {elapsed:.1f} s")
    supervisord_log = (tmp_path / "state" / "supervisord.log").read_text()
    # Stopped, not killed: every program shut down gracefully on the one SIGTERM.
    for name in ("worker", "web", "scheduler"):
        assert f"stopped: {name} (exit status 0)" in supervisord_log, supervisord_log


def test_up_without_urls_runs_embedded_servers_that_keep_their_data(procs, tmp_path):
    """A fresh machine: no URLs, no LEDGERQ_ENV (production by default), no JWT_SECRET."""
    state = tmp_path / "state"
    remove = ("DATABASE_URL", "REDIS_URL", "LEDGERQ_ENV", "JWT_SECRET", "JWT_SECRET_FILE")
    up, http = start_up(procs, state, free_port(), remove=remove)
    status, ready = http.get("/readyz")
    assert ready["checks"] == {"postgres": "ok", "migrations": "ok", "redis": "ok"}
    assert (state / "postgres" / "PG_VERSION").exists()
    assert (state / "redis" / "appendonly.aof").exists()
    username = f"keeper-{uuid.uuid4().hex[:8]}"
    status, body = http.post(
        "/api/v1/auth/register",
        {"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert status == 201, body
    # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
    first_stop = stop_up(procs, up, signal.SIGINT, group=True)

    up, http = start_up(procs, state, free_port(), remove=remove)
    headers = login(http, username)  # the user of the first run is still there
    status, me = http.get("/api/v1/auth/me", headers)
    assert (status, me["username"]) == (200, username)
    second_stop = stop_up(procs, up)
    print(f"embedded stack stopped in {first_stop:.1f} s and {second_stop:.1f} s")


def test_up_keeps_accepting_through_a_redis_outage_and_catches_up(procs, tmp_path, tmp_path_factory, make):
    """DESIGN.md: Redis down -> the API keeps accepting (202, durable), workers
    reconnect, the sweeper re-enqueues. A private Redis (the shared one must stay up),
    outside `procs`' directory so that stopping the stack does not count it."""
    redis_dir, redis_port = tmp_path_factory.mktemp("redis"), free_port()
    redis = EmbeddedRedis(redis_dir, port=redis_port)
    try:
        up, http = start_up(procs, tmp_path / "state", free_port(), env={"REDIS_URL": redis.url})
        alice, bob = make.user(), make.user()
        a, b = make.account(alice, balance="50.00"), make.account(bob)
        before = submit(
            http,
            "transfer",
            {"from_account_id": str(a), "to_account_id": str(b), "amount": "1.00"},
            alice.headers,
        )
        assert final_status(http, before, alice.headers) == "completed"

        redis.stop()
        wait_for("readyz to report Redis down", lambda: http.status("/readyz") == 503, 15)
        during = []
        for _ in range(5):
            started = time.monotonic()
            during.append(
                submit(
                    http,
                    "transfer",
                    {"from_account_id": str(a), "to_account_id": str(b), "amount": "2.00"},
                    alice.headers,
                )
            )
            assert time.monotonic() - started < 10, "the API hung on the dead Redis"
        time.sleep(2)  # the outage lasts: nothing can be applied without the broker
        for tx_id in during:
            status, tx = http.get(f"/api/v1/transactions/{tx_id}", alice.headers)
            assert (status, tx["status"]) == (200, "pending")

        redis = EmbeddedRedis(redis_dir, port=redis_port)  # back on the same port and data
        for tx_id in during:
            assert final_status(http, tx_id, alice.headers, timeout=45) == "completed", procs.logs()
        assert balance_of(http, str(a), alice.headers) == "39.00"
        stop_up(procs, up)
    finally:
        redis.stop()


def test_up_stopped_while_starting_leaves_no_embedded_server_behind(procs, tmp_path):
    """SIGTERM while the embedded PostgreSQL has started but the stack has not: the
    default action used to kill `ledgerq up` before its clean-up ran."""
    state = tmp_path / "state"
    up = procs.start(
        "up",
        [LEDGERQ, "up", "--state-dir", str(state)],
        env={"PORT": str(free_port())},
        remove=("DATABASE_URL", "REDIS_URL"),
    )
    wait_for("the embedded PostgreSQL to start", lambda: "embedded PostgreSQL" in procs.logs_text("up"), 90)
    stop_up(procs, up)  # exit 0, and nothing left running
    assert not (state / "postgres" / "postmaster.pid").exists()  # stopped, not killed


def test_up_with_a_long_state_dir_runs_and_fails_loudly_when_supervisord_goes(procs, tmp_path):
    """A state dir deeper than a Unix socket path allows used to make supervisord refuse
    to start, while `ledgerq up` printed "all processes stopped" and exited 0."""
    state = tmp_path / ("deep-" * 20) / "state"
    up, http = start_up(procs, state, free_port())
    assert len(os.fsencode(state / "supervisor.sock")) > 108
    supervisord = next(
        p for p in psutil.Process(up.pid).children() if "supervisor.supervisord" in safe(p.cmdline, [])
    )
    # Someone else stops supervisord (it stops its programs): not a stop `ledgerq up` was
    # asked for, so it must say so and fail, for its own supervisor to notice.
    supervisord.terminate()
    assert up.wait(timeout=40) == 1, procs.logs()
    assert "supervisord exited with code 0" in procs.logs_text("up")
    assert wait_for_nothing_left(procs) == []


def test_up_killed_outright_takes_its_stack_with_it_and_the_next_run_recovers(procs, tmp_path):
    """SIGKILL (the OOM killer, kill -9) cannot be handled, but the stack must not live
    on as orphans holding the port and the embedded Redis, whose AOF the next run would
    open with a second server. Only the embedded PostgreSQL outlives it, by design: the
    next run adopts it, and stops it when it stops."""
    state = tmp_path / "state"
    remove = ("DATABASE_URL", "REDIS_URL")
    port = free_port()
    up, http = start_up(procs, state, port, remove=remove)
    username = f"survivor-{uuid.uuid4().hex[:8]}"
    status, body = http.post(
        "/api/v1/auth/register",
        {"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert status == 201, body

    up.kill()
    up.wait(timeout=10)

    def only_postgres_left():
        return all(safe(p.name, "") == "postgres" for p in procs.survivors())

    wait_for("the orphaned stack to stop", only_postgres_left, 40, interval=0.25)
    assert http.status("/healthz") is None  # nothing serves the port any more

    up, http = start_up(procs, state, port, remove=remove)
    login(http, username)
    stop_up(procs, up)  # includes: nothing left, not even PostgreSQL


def test_help_and_version_need_no_configuration():
    """On a machine with nothing configured (production by default, no JWT_SECRET),
    `-h` of every command and `--version` answer instead of refusing to start."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("LEDGERQ_ENV", "JWT_SECRET", "JWT_SECRET_FILE")}
    commands = (
        ["-h"],
        ["--version"],
        ["up", "-h"],
        ["bench", "-h"],
        ["verify", "-h"],
        ["users", "create", "-h"],
    )
    # All at once: each is a Python start and the app's imports (~1.6 s of CPU), which
    # one after the other left every core but one idle.
    started = [
        (
            args,
            subprocess.Popen(
                [LEDGERQ, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
        for args in commands
    ]
    try:
        for args, process in started:
            stdout, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, (args, stdout, stderr)
            assert "refusing to start" not in stdout + stderr
    finally:
        for _, process in started:
            process.kill()  # none is left behind by a failure (a no-op on the finished)
            process.wait()
