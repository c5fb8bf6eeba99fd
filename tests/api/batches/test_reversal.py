"""POST /batches/{id}/reverse: a new batch moves back every completed line of a finished
batch, through the same chunk actors and posting engine, once per batch."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from tests.fixtures.batches import assert_counts_add_up, csv_bytes, items, upload, wait_batch
from tests.fixtures.ledger import balance, ledger_problems, sql, wait_final


def reverse(client, user, batch_id, *, key=None, **body):
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post(f"/api/v1/batches/{batch_id}/reverse", json=body or None, headers=headers)


def finished(client, user, content: bytes, **form) -> dict:
    response = upload(client, user, content, **form)
    assert response.status_code == 202, response.json
    return wait_batch(client, user, response.json["id"])


def reversed_by(tx_id) -> str | None:
    rows = sql(
        "SELECT id FROM transactions WHERE reverses = :id AND status NOT IN ('failed', 'cancelled')", id=tx_id
    )
    return str(rows[0][0]) if rows else None


def test_independent_reversal_moves_every_completed_line_back(client, make, worker):
    finance, alice, bob, carol = make.user("finance"), make.user(), make.user(), make.user()
    a, b, c = make.account(alice, balance="100.00"), make.account(bob), make.account(carol)
    original = finished(
        client,
        finance,
        csv_bytes(
            f"{a},{b},10.00,USD,p1",
            f"{a},{c},5.25,USD,p2",
            f"{a},{b},900.00,USD,p3",  # failed: insufficient funds; nothing to reverse
            f",{c},1.00,USD,p4",  # a credit
        ),
    )
    assert original["status"] == "completed_with_errors"
    assert (balance(a), balance(b), balance(c)) == ("84.75", "10.00", "6.25")
    lines = {item["line"]: item for item in items(client, finance, original["id"])}

    response = reverse(client, finance, original["id"])
    assert response.status_code == 202, response.json
    assert response.headers["Location"] == f"/api/v1/batches/{response.json['id']}"
    assert response.json["reverses"] == original["id"] and response.json["mode"] == "independent"
    done = wait_batch(client, finance, response.json["id"])
    assert done["status"] == "completed"
    assert done["counts"]["completed"] == 3 and done["total_items"] == 3
    assert_counts_add_up(done)
    assert (balance(a), balance(b), balance(c)) == ("100.00", "0.00", "0.00")

    reversal_items = {item["line"]: item for item in items(client, finance, done["id"])}
    assert sorted(reversal_items) == [2, 3, 5]  # the completed lines, by their line numbers
    for line, item in reversal_items.items():
        assert item["type"] == "reversal" and item["status"] == "completed"
        assert item["from_account_id"] == lines[line]["to_account_id"] or lines[line]["type"] == "credit"
        assert reversed_by(lines[line]["transaction_id"]) == item["transaction_id"]
        shown = client.get(f"/api/v1/transactions/{lines[line]['transaction_id']}", headers=finance.headers)
        assert shown.json["reversed_by"] == item["transaction_id"]
        assert (
            client.get(f"/api/v1/transactions/{item['transaction_id']}", headers=finance.headers).json[
                "reverses"
            ]
            == lines[line]["transaction_id"]
        )
    assert ledger_problems() == []


def test_atomic_reversal_moves_everything_back_or_nothing(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b, c = make.account(alice, balance="50.00"), make.account(bob), make.account(bob)
    original = finished(
        client, finance, csv_bytes(f"{a},{b},20.00,USD,p1", f"{a},{c},30.00,USD,p2"), mode="atomic"
    )
    assert original["status"] == "completed"
    # Bob spends part of what line 3 gave him: its reversal can no longer be funded.
    bob_spends = client.post(
        "/api/v1/transactions/transfer",
        json={"from_account_id": str(c), "to_account_id": str(b), "amount": "1.00", "currency": "USD"},
        headers=bob.headers,
    )
    assert wait_final([bob_spends.json["id"]])[bob_spends.json["id"]] == "completed"

    first = reverse(client, finance, original["id"])  # atomic, as the original
    assert first.status_code == 202 and first.json["mode"] == "atomic"
    failed = wait_batch(client, finance, first.json["id"])
    assert failed["status"] == "failed" and "insufficient_funds" in failed["failure_message"]
    assert (balance(a), balance(b), balance(c)) == ("0.00", "21.00", "29.00")  # nothing moved

    # A failed reversal moved nothing and does not count: the batch can be reversed again,
    # here line by line, so what can be moved back is.
    second = reverse(client, finance, original["id"], mode="independent")
    assert second.status_code == 202, second.json
    done = wait_batch(client, finance, second.json["id"])
    assert done["status"] == "completed_with_errors"
    assert done["counts"]["completed"] == 1 and done["counts"]["failed"] == 1
    assert (balance(a), balance(b), balance(c)) == ("20.00", "1.00", "29.00")
    assert ledger_problems() == []


def test_an_independent_batch_reversed_atomically(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    original = finished(client, finance, csv_bytes(f"{a},{b},4.00,USD,p1", f"{a},{b},6.00,USD,p2"))
    response = reverse(client, finance, original["id"], mode="atomic")
    assert response.status_code == 202 and response.json["mode"] == "atomic"
    assert wait_batch(client, finance, response.json["id"])["status"] == "completed"
    assert (balance(a), balance(b)) == ("10.00", "0.00")
    assert ledger_problems() == []


def test_a_batch_is_reversed_once_and_a_replay_returns_the_same_reversal(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    original = finished(client, finance, csv_bytes(f"{a},{b},4.00,USD,p1"))

    first = reverse(client, finance, original["id"], key="undo-1")
    assert first.status_code == 202
    replay = reverse(client, finance, original["id"], key="undo-1")
    assert replay.status_code == 202 and replay.json["id"] == first.json["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    again = reverse(client, finance, original["id"], key="undo-2")
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert again.json["error"]["details"]["reversed_by"] == first.json["id"]
    wait_batch(client, finance, first.json["id"])
    assert reverse(client, finance, original["id"]).status_code == 409  # also once it is done
    assert (balance(a), balance(b)) == ("10.00", "0.00")
    # A reversal batch is not reversed in turn (as a single reversal is not).
    of_reversal = reverse(client, finance, first.json["id"])
    assert of_reversal.status_code == 409 and "cannot be reversed" in of_reversal.json["error"]["message"]


def test_concurrent_reversals_of_one_batch_make_one(app, client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    original = finished(client, finance, csv_bytes(f"{a},{b},4.00,USD,p1", f"{a},{b},1.00,USD,p2"))
    start, answers = threading.Barrier(4), []

    def attempt(n: int) -> None:
        with app.test_client() as own:
            start.wait()
            answers.append(reverse(own, finance, original["id"], key=f"race-{n}"))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in answers) == [202, 409, 409, 409]
    winner = next(r for r in answers if r.status_code == 202).json["id"]
    assert wait_batch(client, finance, winner)["status"] == "completed"
    assert sql("SELECT count(*) FROM batches WHERE reverses = :id", id=original["id"]) == [(1,)]
    assert (balance(a), balance(b)) == ("10.00", "0.00")
    assert ledger_problems() == []


def test_lines_reversed_on_their_own_are_skipped_and_reported(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    original = finished(client, finance, csv_bytes(f"{a},{b},4.00,USD,p1", f"{a},{b},1.00,USD,p2"))
    line_2 = items(client, finance, original["id"])[0]
    single = client.post(f"/api/v1/transactions/{line_2['transaction_id']}/reverse", headers=finance.headers)
    assert single.status_code == 202
    assert wait_final([single.json["id"]])[single.json["id"]] == "completed"

    response = reverse(client, finance, original["id"], mode="atomic")
    assert response.status_code == 202, response.json
    done = wait_batch(client, finance, response.json["id"])
    assert done["status"] == "completed"  # a skipped line is done, not an error
    assert done["counts"]["completed"] == 1 and done["counts"]["rejected"] == 1
    skipped = items(client, finance, done["id"], status="rejected")
    assert [(i["line"], i["failure_code"]) for i in skipped] == [(2, "already_reversed")]
    assert single.json["id"] in skipped[0]["failure_message"]
    assert (balance(a), balance(b)) == ("10.00", "0.00")
    assert reversed_by(line_2["transaction_id"]) == single.json["id"]
    assert ledger_problems() == []


def test_only_a_finished_batch_with_completed_lines_can_be_reversed(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = upload(client, finance, csv_bytes(f"{a},{b},4.00,USD,p1"), scheduled_for=tomorrow)
    assert scheduled.json["status"] == "scheduled"
    refused = reverse(client, finance, scheduled.json["id"])
    assert refused.status_code == 409 and refused.json["error"]["details"]["status"] == "scheduled"

    nothing = finished(client, finance, csv_bytes(f"{a},{b},400.00,USD,p1"))
    assert nothing["status"] == "failed"
    assert reverse(client, finance, nothing["id"]).status_code == 409
    assert reverse(client, alice, nothing["id"]).status_code == 403
    assert reverse(client, finance, "00000000-0000-0000-0000-000000000000").status_code == 404
    bad_mode = reverse(client, finance, nothing["id"], mode="sometimes")
    assert bad_mode.status_code == 422
    assert sql("SELECT count(*) FROM batches WHERE reverses IS NOT NULL") == [(0,)]


def test_a_batch_whose_every_line_was_reversed_on_its_own_has_nothing_to_reverse(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    original = finished(client, finance, csv_bytes(f"{a},{b},4.00,USD,p1"))
    line = items(client, finance, original["id"])[0]
    single = client.post(f"/api/v1/transactions/{line['transaction_id']}/reverse", headers=finance.headers)
    assert wait_final([single.json["id"]])[single.json["id"]] == "completed"

    refused = reverse(client, finance, original["id"])
    assert refused.status_code == 409 and refused.json["error"]["details"]["skipped"] == 1
    # Nothing of the refused reversal is kept: no batch, no line.
    assert sql("SELECT count(*) FROM batches WHERE reverses IS NOT NULL") == [(0,)]
    assert sql("SELECT count(*) FROM transactions WHERE type = 'reversal'") == [(1,)]
