"""The scheduler's Prometheus exposition: queue gauges with the numbers GET /admin/queues
shows, and a busy metrics port that does not stop the scheduler."""

from __future__ import annotations

import urllib.request

from prometheus_client import REGISTRY

from db.ops.embedded import free_port
from tests.fixtures.broker import fill_queues


def test_scheduler_exports_the_same_numbers_as_prometheus_gauges():
    from scheduler import metrics

    fill_queues()
    metrics.refresh_queue_gauges()
    sample = REGISTRY.get_sample_value
    assert sample("ledgerq_queue_depth", {"queue": "transactions"}) == 3
    assert sample("ledgerq_queue_delayed", {"queue": "transactions"}) == 1
    assert sample("ledgerq_queue_dead_letters", {"queue": "transactions"}) == 1

    port = free_port()
    metrics.serve(port, "127.0.0.1")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'ledgerq_queue_depth{queue="transactions"} 3.0' in body
    assert "ledgerq_scheduler_leader" in body


def test_a_busy_metrics_port_does_not_stop_the_scheduler():
    import socket

    from scheduler import metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics.serve(taken.getsockname()[1], "127.0.0.1")  # logs an error, returns
