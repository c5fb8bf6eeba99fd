"""GET /admin/queues: depth, delayed and dead letters per queue, read from the real Redis
broker (the scheduler's gauges of the same numbers: tests/scheduler/test_metrics.py)."""

from __future__ import annotations

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
