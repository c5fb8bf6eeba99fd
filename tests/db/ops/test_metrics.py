"""Each process kind exports its own metrics only, with `process_*` and build info, and
every exposition endpoint can be closed with a token or an allowlist."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from db.core.config import get_settings
from db.ops import metrics
from db.ops.embedded import free_port
from tests.fixtures.builders import pending_transfer
from tests.fixtures.http import app_with, bearer


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _sample(text: str, name: str, labels: dict | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels is None or sample.labels == labels):
                return sample.value
    return None


def test_every_metric_the_code_defines_is_exported_by_some_process_kind():
    import scheduler.main  # noqa: F401 - every module that defines metrics
    import workers  # noqa: F401

    defined = {family.name for family in REGISTRY.collect() if family.name.startswith("ledgerq_")}
    assert defined  # the modules above did define some
    orphans = {name for name in defined if not any(metrics.owns(kind, name) for kind in metrics.KINDS)}
    assert orphans == set(), "add them to db/ops/metrics.py FAMILIES"


def test_web_metrics_hold_the_web_tier_only(client):
    import scheduler.metrics  # noqa: F401 - its gauges exist in this process too
    import workers  # noqa: F401

    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    names = set(_families(text))
    assert {"ledgerq_http_requests", "ledgerq_http_request_seconds", "ledgerq_build_info"} <= names
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"} <= names
    foreign = (metrics.FAMILIES[metrics.WORKER] | metrics.FAMILIES[metrics.SCHEDULER]) - metrics.FAMILIES[
        metrics.WEB
    ]
    assert names & foreign == set()
    assert not [name for name in names if name.startswith("dramatiq_")]
    assert _sample(text, "ledgerq_build_info", None) == 1
    info = next(iter(_families(text)["ledgerq_build_info"].samples)).labels
    assert info["component"] == "web" and info["version"]


def test_scheduler_metrics_hold_the_scheduler_and_its_backlog_only(make):
    from scheduler import metrics as scheduler_metrics

    alice = make.user()
    source, target = make.account(alice, balance="10.00"), make.account(alice)
    pending_transfer(alice, source, target, "1.00")
    scheduler_metrics.refresh_backlog()
    try:
        text = metrics.exposition(metrics.SCHEDULER, get_settings())[0].decode()
    finally:
        scheduler_metrics.forget_gauges()
    assert _sample(text, "ledgerq_pending_transactions") == 1
    assert _sample(text, "ledgerq_oldest_pending_age_seconds") >= 0
    assert _sample(text, "ledgerq_scheduler_lag_seconds", {"kind": "scheduled_transfer"}) == 0
    assert _sample(text, "ledgerq_batches_in_progress", {"status": "processing"}) == 0
    names = set(_families(text))
    assert names & (metrics.FAMILIES[metrics.WORKER] - metrics.FAMILIES[metrics.SCHEDULER]) == set()
    # No `<counter>_created` series (the old `ledgerq_schedule_runs_created_created`).
    assert "_created" not in "".join(line for line in text.splitlines() if not line.startswith("#"))
    # A standby (or a stopped leader) exports none of the leader's gauges.
    after = metrics.exposition(metrics.SCHEDULER, get_settings())[0].decode()
    assert _sample(after, "ledgerq_pending_transactions") is None


def test_metrics_token_is_required_when_set():
    client = app_with(metrics_token="s3cret-metrics-token").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("wrong")).status_code == 401
    response = client.get("/metrics", headers=bearer("s3cret-metrics-token"))
    assert response.status_code == 200 and b"ledgerq_build_info" in response.data


def test_metrics_allowlist_names_the_scrapers():
    client = app_with(metrics_allow_csv="10.0.0.0/8, 192.168.1.7").test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.2.3.4"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "172.16.0.1"}).status_code == 403


def test_an_unparseable_allowlist_refuses_to_start():
    from pydantic import ValidationError

    from db.core.config import Settings

    with pytest.raises(ValidationError, match="LEDGERQ_METRICS_ALLOW"):
        Settings(LEDGERQ_METRICS_ALLOW="10.0.0.0/8,not-a-network")


def test_the_worker_and_scheduler_endpoints_honour_the_token_too():
    settings = get_settings().model_copy(update={"metrics_token": "another-token"})
    port = free_port()
    server = metrics.make_server(metrics.WORKER, settings, "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=5)
        assert denied.value.code == 401
        request = urllib.request.Request(url, headers=bearer("another-token"))
        text = urllib.request.urlopen(request, timeout=5).read().decode()
        assert _sample(text, "ledgerq_build_info") == 1
        assert "ledgerq_http_requests" not in text
    finally:
        server.shutdown()
        server.server_close()
