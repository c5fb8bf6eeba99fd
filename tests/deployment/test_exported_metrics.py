"""Every metric a dashboard or an alert queries is one the processes really export.

A real web tier (gunicorn, two processes), a real worker group and a real scheduler run
against this run's PostgreSQL and Redis. A little traffic goes through them: a transfer
that completes, one the worker fails, one that is retried (a row lock held here makes
its first attempt time out), a batch, and webhook deliveries to a receiver here that
answers the first one 500 (retried, then delivered). Then each process's /metrics is scraped and every
name the dashboards and alerts use is looked up in the scrape of the job it names.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from db.core.config import get_settings
from db.ops.embedded import free_port
from tests.deployment.observability import JOBS, alert_queries, dashboard_queries, metric_uses
from tests.fixtures.broker import resend
from tests.fixtures.builders import pending_transfer
from tests.fixtures.ledger import wait_final
from tests.fixtures.processes import LEDGERQ, Http, Processes, wait_for
from tests.fixtures.webhooks import Receiver

pytestmark = pytest.mark.slow

GUNICORN = str(Path(LEDGERQ).parent / "gunicorn")


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def _answers(port: int) -> str | None:
    try:
        return _scrape(port)
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


def _sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One stack for the module: its start (three processes importing the app) was the
    larger part of each test. Both tests only read what the processes export; the one
    that runs after the traffic sees more of it, which its "only its own" checks are
    no weaker for."""
    processes = Processes(tmp_path_factory.mktemp("exported-metrics"))
    ports = {"web": free_port(), "worker": free_port(), "scheduler": free_port()}
    common = {"WEB_HOST": "127.0.0.1", "SWEEPER_STALE_AFTER_SECONDS": "600"}
    web = processes.start(
        "web",
        [GUNICORN, "--config", "python:api.gunicorn_conf", "api:create_app()"],
        env={**common, "PORT": str(ports["web"]), "WEB_WORKERS": "2", "WEB_THREADS": "4"},
    )
    processes.start(
        "worker",
        [LEDGERQ, "worker", "--processes", "1", "--threads", "2", "--metrics-port", str(ports["worker"])],
        # A held row lock makes the first attempt fail fast (and be retried).
        env={**common, "LEDGERQ_DB_LOCK_TIMEOUT_MS": "300"},
    )
    processes.start(
        "scheduler",
        [LEDGERQ, "scheduler"],
        env={
            **common,
            "SCHEDULER_METRICS_PORT": str(ports["scheduler"]),
            "SCHEDULER_QUEUE_GAUGE_SECONDS": "1",
        },
    )
    http = Http(f"http://127.0.0.1:{ports['web']}")
    try:
        http.wait_ready(90, web)
        wait_for("the worker's metrics", lambda: _answers(ports["worker"]), 90)
        wait_for(
            "the scheduler to lead and measure the backlog",
            lambda: "ledgerq_pending_transactions" in (_answers(ports["scheduler"]) or ""),
            90,
        )
        yield http, ports, processes
    except BaseException:
        print(processes.logs())
        raise
    finally:
        processes.kill_all()


def _traffic(http: Http, make, ports, receiver: Receiver) -> None:
    alice, finance = make.user(), make.user("finance")
    source, target, other = (
        make.account(alice, balance="100.00"),
        make.account(alice),
        make.account(make.user()),
    )
    transfer = {"from_account_id": str(source), "amount": "1.00", "currency": "USD"}

    # Webhooks: the scheduler's dispatch tick and the worker deliver alice's events to
    # the receiver while the rest goes on; the first attempt is answered 500.
    receiver.statuses = [500]
    status, hook = http.post(
        "/api/v1/webhooks", {"url": receiver.url, "events": ["transaction.completed"]}, alice.headers
    )
    assert status == 201, hook

    status, body = http.post(
        "/api/v1/transactions/transfer", {**transfer, "to_account_id": str(target)}, alice.headers
    )
    assert status == 202, body
    assert wait_final([body["id"]], timeout=60) == {body["id"]: "completed"}

    # Failed by the worker: the target is frozen between acceptance and application.
    doomed = pending_transfer(alice, source, other, "1.00")
    status, body = http.post(f"/api/v1/accounts/{other}/freeze", {}, finance.headers)
    assert status == 200, body
    resend([doomed])
    assert wait_final([doomed], timeout=60) == {doomed: "failed"}

    # Retried: the target's balance row is locked here until the worker has retried once.
    plain = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as holder:
        holder.execute("SELECT 1 FROM balances WHERE account_id = %s FOR UPDATE", (target,))
        status, body = http.post(
            "/api/v1/transactions/transfer", {**transfer, "to_account_id": str(target)}, alice.headers
        )
        assert status == 202, body
        wait_for(
            "a retry",
            lambda: "dramatiq_message_retries_total" in _scrape(ports["worker"]),
            60,
        )
        holder.rollback()
    assert wait_final([body["id"]], timeout=60) == {body["id"]: "completed"}

    item = {"from_account_id": str(source), "to_account_id": str(target), "amount": "2.00", "currency": "USD"}
    status, batch = http.post(
        "/api/v1/batches", {"items": [item, {**item, "amount": "3.00"}]}, finance.headers
    )
    assert status == 202, batch
    wait_for(
        "the batch to finish",
        lambda: http.get(f"/api/v1/batches/{batch['id']}", finance.headers)[1]["status"] == "completed",
        60,
    )
    assert http.get("/api/v1/no-such-route")[0] == 404

    def delivered() -> bool:  # every completed transfer's event, one after a retry
        page = http.get(f"/api/v1/webhooks/{hook['id']}/deliveries?limit=200", alice.headers)[1]
        items = page["items"]
        return (
            bool(items)
            and all(d["status"] == "delivered" for d in items)
            and any(d["attempts"] >= 2 for d in items)
        )

    wait_for("the webhook deliveries, one of them retried", delivered, 60)


def test_dashboards_and_alerts_query_only_metrics_the_processes_export(stack, make):
    http, ports, _ = stack
    receiver = Receiver()
    try:
        _traffic(http, make, ports, receiver)
    finally:
        receiver.stop()

    def everything_scraped():
        exported = {job: _sample_names(_scrape(ports[job.removeprefix("ledgerq-")])) for job in JOBS}
        needed = [
            (where, name, job)
            for where, expr in {**dashboard_queries(), **alert_queries()}.items()
            for name, job in metric_uses(expr)
        ]
        missing = [
            f"{where}: {name}" + (f" (job {job})" if job else "")
            for where, name, job in needed
            if name not in (exported[job] if job else set().union(*exported.values()))
        ]
        return missing, needed

    # Counters of the worker's own processes appear once they have been written.
    missing, needed = everything_scraped()
    if missing:
        wait_for("the last samples", lambda: not everything_scraped()[0], 20)
        missing, needed = everything_scraped()
    assert len(needed) > 50  # the dashboards and alerts were read
    assert missing == []


def test_each_process_exports_only_its_own_metrics(stack):
    _, ports, _ = stack
    web, worker, scheduler = (_sample_names(_scrape(ports[kind])) for kind in ("web", "worker", "scheduler"))
    assert "ledgerq_http_requests_total" in web
    assert not {
        name for name in web if name.startswith(("dramatiq_", "ledgerq_transaction", "ledgerq_queue_"))
    }
    assert "ledgerq_http_requests_total" not in worker and "ledgerq_queue_depth" not in worker
    assert "ledgerq_transactions_dead_lettered_total" not in scheduler
    assert not {name for name in scheduler if name.endswith("_created")}
    for names in (web, worker, scheduler):
        assert {"ledgerq_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
