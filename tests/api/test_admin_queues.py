"""GET /admin/queues and the scheduler's queue gauges: depth, delayed and dead letters
per queue, read from the real Redis broker."""

from __future__ import annotations

import urllib.request

from prometheus_client import REGISTRY

from db.ops.embedded import free_port
from tests.fixtures.broker import fill_queues


def _by_name(response) -> dict:
    return {queue["name"]: queue for queue in response.json["queues"]}


def test_admin_sees_depth_delayed_and_dead_letters_per_queue(client, make):
    fill_queues()
    response = client.get("/api/v1/admin/queues", headers=make.user("admin").headers)
    assert response.status_code == 200, response.json
    queues = _by_name(response)
    assert {"transactions", "maintenance"} <= set(queues)
    assert queues["transactions"] == {
        "name": "transactions",
        "depth": 3,
        "in_flight": 0,
        "delayed": 1,
        "dead_letters": 1,
    }
    assert queues["maintenance"]["depth"] == 0
    assert response.json["as_of"]


def test_only_admins_see_queues(client, make):
    for role in ("customer", "finance"):
        response = client.get("/api/v1/admin/queues", headers=make.user(role).headers)
        assert response.status_code == 403 and response.json["error"]["code"] == "forbidden"
    assert client.get("/api/v1/admin/queues").status_code == 401


def test_redis_down_is_503_not_500(client, make, monkeypatch):
    import redis

    import workers.queues

    def unreachable(_broker):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(workers.queues, "queue_stats", unreachable)
    response = client.get("/api/v1/admin/queues", headers=make.user("admin").headers)
    assert response.status_code == 503 and response.json["error"]["code"] == "unavailable"


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
