"""GET /accounts/{id}/entries shows each entry's `hash` and `prev_hash`, and an auditor
holding only that output recomputes the whole chain with the encoding MONEY_RULES.md
documents (written out again here, independently of db/ledger/hash_chain.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

from tests.fixtures.builders import pending_transfer
from tests.fixtures.http import API
from tests.fixtures.ledger import apply_now, sql


def auditor_hash(entry: dict, exponent: int) -> str:
    """The documented encoding, from the API's own fields."""
    minor = lambda amount: int(Decimal(amount).scaleb(exponent))  # noqa: E731 - exact: Decimal
    created = datetime.fromisoformat(entry["created_at"]).astimezone(UTC)
    lines = [
        "ledgerq-entry-v1",
        entry["id"],
        entry["transaction_id"],
        entry["account_id"],
        str(minor(entry["amount"])),
        entry["currency"],
        str(minor(entry["balance_after"])),
        created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        entry["prev_hash"] or "",
    ]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def test_entries_carry_a_chain_an_auditor_can_recompute(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    for amount in ("25.50", "0.01", "3.00"):
        assert apply_now(pending_transfer(alice, a, b, amount)) == "completed"

    page = client.get(f"{API}/accounts/{a}/entries", headers=alice.headers)
    assert page.status_code == 200
    entries = list(reversed(page.json["items"]))  # newest first on the wire
    assert len(entries) == 4
    assert entries[0]["prev_hash"] is None
    for before, entry in zip(entries, entries[1:], strict=False):
        assert entry["prev_hash"] == before["hash"]
    assert [auditor_hash(e, 2) for e in entries] == [e["hash"] for e in entries]
    # The head kept on the balance row is the newest entry's hash.
    assert sql("SELECT head_hash FROM balances WHERE account_id = :a", a=str(a))[0][0] == entries[-1]["hash"]


def test_the_openapi_document_describes_hash_and_prev_hash(client):
    spec = client.get(f"{API}/openapi.json").json
    entry = spec["components"]["schemas"]["Entry"]["properties"]
    assert "ledgerq-entry-v1" in entry["hash"]["description"]
    assert entry["prev_hash"]["nullable"] is True
