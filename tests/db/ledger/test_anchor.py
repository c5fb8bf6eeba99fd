"""The daily anchor (db/ledger/anchor.py): one `ledger.anchored` audit row per UTC day
pins every chain head; `ledgerq verify` recomputes the latest one from the entries, so a
rewrite of history before it is caught even when the chains and heads were redone."""

from __future__ import annotations

import hashlib

from db.ledger.hash_chain import canonical_time, entry_hash
from tests.fixtures.builders import pending_transfer
from tests.fixtures.ledger import apply_now, audit_events, ledger_problems, sql
from workers.maintenance import anchor_ledger_today


def heads_now() -> str:
    lines = sql("SELECT account_id::text, head_hash FROM balances WHERE head_hash IS NOT NULL ORDER BY 1")
    return hashlib.sha256("".join(f"{a} {h}\n" for a, h in lines).encode()).hexdigest()


def test_one_anchor_a_day_over_every_head(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    assert apply_now(pending_transfer(alice, a, b, "3.00")) == "completed"

    data = anchor_ledger_today()
    assert data is not None and data["digest"] == heads_now()
    assert data["last_entry_id"] == sql("SELECT max(id) FROM ledger_entries")[0][0]
    assert anchor_ledger_today() is None  # the same day: nothing more
    day = sql("SELECT now()::date::text")[0][0]
    assert [action for action, _ in audit_events(day)] == ["ledger.anchored"]

    # Later postings move the heads; the anchor still verifies, as of its entry id.
    assert apply_now(pending_transfer(alice, a, b, "1.00")) == "completed"
    assert heads_now() != data["digest"]
    assert ledger_problems() == []


def test_a_rewritten_history_that_relinks_every_chain_still_fails_the_anchor(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    assert apply_now(pending_transfer(alice, a, b, "3.00")) == "completed"
    assert anchor_ledger_today() is not None

    # Behind the database's back: an entry's date moved, and the whole chain of its
    # account recomputed and relinked, head included. The chain check cannot tell.
    rows = sql(
        "SELECT id, transaction_id, account_id, amount_minor, currency, balance_after_minor, "
        "created_at - interval '1 day' * (row_number() OVER (ORDER BY id) = 1)::int "
        "FROM ledger_entries WHERE account_id = :a ORDER BY id",
        a=str(a),
    )
    prev = None
    statements = ["SET LOCAL session_replication_role = replica"]
    for entry_id, tx, account, amount, currency, after, created in rows:
        digest = entry_hash(entry_id, tx, account, amount, currency, after, canonical_time(created), prev)
        linked = f"'{prev}'" if prev else "NULL"
        statements.append(
            f"UPDATE ledger_entries SET created_at = '{created.isoformat()}', hash = '{digest}', "
            f"prev_hash = {linked} WHERE id = {entry_id}"
        )
        prev = digest
    statements.append(f"UPDATE balances SET head_hash = '{prev}' WHERE account_id = '{a}'")
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine().begin() as connection:
        for statement in statements:
            connection.execute(text(statement))

    problems = ledger_problems()
    assert not [p for p in problems if p.startswith("hash_chain")]
    # Only the anchor names the rewrite among the ledger checks; moving an entry's date
    # also moves its money between days of the account's analytics rollup, which the
    # rollup check (rightly) reports too.
    assert {p.split(":")[0] for p in problems} == {"ledger_anchor", "analytics_rollups"}, problems
    assert [p for p in problems if p.startswith("ledger_anchor: anchor of ")], problems
