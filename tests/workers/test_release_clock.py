"""Scheduled releases go by the database's clock (`now()`), the one every row's time is
written by, not by the clock of whichever host runs the tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.fixtures.batches import csv_bytes, upload
from tests.fixtures.http import transfer
from tests.fixtures.ledger import transaction
from tests.fixtures.scheduling import iso, later
from workers import batches as batch_actors
from workers import maintenance


class _FastHostClock(datetime):
    """A worker host whose clock runs two hours ahead."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(hours=2)


def test_a_host_clock_ahead_releases_nothing_early(client, make, monkeypatch):
    finance, alice = make.user("finance"), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    tx = transfer(client, alice, a, b, scheduled_for=iso(later(hours=1))).json
    batch = upload(
        client,
        finance,
        csv_bytes(f"{a},{b},1.00,USD,k1"),
        scheduled_for=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    ).json
    monkeypatch.setattr(maintenance, "datetime", _FastHostClock, raising=False)
    monkeypatch.setattr(batch_actors, "datetime", _FastHostClock, raising=False)

    assert maintenance.release_due_scheduled() == 0
    assert batch_actors.release_due_batches() == 0
    assert transaction(tx["id"]).status == "scheduled"
    assert client.get(f"/api/v1/batches/{batch['id']}", headers=finance.headers).json["status"] == "scheduled"
