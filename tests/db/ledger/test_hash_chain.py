"""The tamper-evident ledger (db/ledger/hash_chain.py): the engine chains every entry it
writes, and `ledgerq verify` names the first broken link of an account for each kind of
edit made behind the database's back (a replica-role session skips the append-only
trigger, as a superuser could)."""

from __future__ import annotations

import pytest

from tests.fixtures.builders import pending_movement, pending_transfer
from tests.fixtures.ledger import apply_now, forge_entry, ledger_problems, sql

RAW = "SET LOCAL session_replication_role = replica"


def behind_the_back(statement: str, **params) -> None:
    """One write the append-only trigger never sees, in its own committed transaction."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine().begin() as connection:
        connection.execute(text(RAW))
        connection.execute(text(statement), params)


def chain_problems() -> list[str]:
    return [p for p in ledger_problems() if p.startswith("hash_chain: ")]


def entry_ids(account) -> list[int]:
    return [
        row[0]
        for row in sql("SELECT id FROM ledger_entries WHERE account_id = :a ORDER BY id", a=str(account))
    ]


def edited(account, entry) -> str:
    return (
        f"hash_chain: account {account}: first broken link at entry {entry}: its hash does not match "
        "its contents (id, transaction, account, amount, currency, balance_after or created_at edited)"
    )


def unlinked(account, entry, before) -> str:
    before_text = f"entry {before} before it" if before is not None else "no entry (it is the first)"
    return (
        f"hash_chain: account {account}: first broken link at entry {entry}: its prev_hash is not the hash of "
        f"{before_text} (an entry deleted, inserted or edited before it)"
    )


def bad_head(account, last) -> str:
    return (
        f"hash_chain: account {account}: head_hash on the balance row is not the hash of its last "
        f"entry {last} (entries deleted from or added to the end of the chain)"
    )


def credit_of(account) -> str:
    """The transaction that funded `account` (it has no entry on any other user account)."""
    return sql(
        "SELECT transaction_id FROM ledger_entries WHERE account_id = :a ORDER BY id LIMIT 1", a=str(account)
    )[0][0]


@pytest.fixture
def history(make):
    """Alice's account with five entries (a credit, transfers both ways, a debit) and Bob's."""
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob, balance="10.00")
    assert apply_now(pending_transfer(alice, a, b, "30.00")) == "completed"
    assert apply_now(pending_transfer(bob, b, a, "5.00")) == "completed"
    assert apply_now(pending_transfer(alice, a, b, "1.00")) == "completed"
    assert apply_now(pending_movement(alice, "debit", "2.00", account_id=a)) == "completed"
    assert len(entry_ids(a)) == 5
    assert ledger_problems() == []
    return a, b


def test_the_engine_chains_each_account_in_id_order(history):
    a, b = history
    for account in (a, b):
        rows = sql(
            "SELECT hash, prev_hash FROM ledger_entries WHERE account_id = :a ORDER BY id", a=str(account)
        )
        assert rows[0][1] is None
        assert [prev for _, prev in rows[1:]] == [h for h, _ in rows[:-1]]
        assert len({h for h, _ in rows}) == len(rows)
        head = sql("SELECT head_hash FROM balances WHERE account_id = :a", a=str(account))[0][0]
        assert head == rows[-1][0]


@pytest.mark.parametrize(
    "column, change",
    [
        ("amount_minor", "amount_minor + 1"),
        ("balance_after_minor", "balance_after_minor + 1"),
        ("created_at", "created_at - interval '1 second'"),
        ("currency", "'EUR'"),
    ],
)
def test_an_edited_entry_is_the_first_broken_link(history, column, change):
    a, _ = history
    ids = entry_ids(a)
    behind_the_back(f"UPDATE ledger_entries SET {column} = {change} WHERE id = :id", id=ids[2])
    assert chain_problems() == [edited(a, ids[2])]


def test_an_entry_moved_to_another_account_breaks_both_chains(history, make):
    a, _ = history
    c = make.account(make.user(), balance="1.00")
    ids = entry_ids(a)
    behind_the_back("UPDATE ledger_entries SET account_id = :c WHERE id = :id", c=str(c), id=ids[2])
    assert chain_problems() == sorted(
        [
            unlinked(a, ids[3], ids[1]),
            edited(c, ids[2]),
        ]
    )


def test_an_edit_whose_hash_was_recomputed_breaks_the_next_link(history):
    from db.ledger.hash_chain import SQL_ENTRY_HASH

    a, _ = history
    ids = entry_ids(a)
    behind_the_back("UPDATE ledger_entries SET amount_minor = amount_minor + 1 WHERE id = :id", id=ids[1])
    behind_the_back(f"UPDATE ledger_entries SET hash = {SQL_ENTRY_HASH} WHERE id = :id", id=ids[1])
    assert chain_problems() == [unlinked(a, ids[2], ids[1])]


def test_a_deleted_entry_is_named_by_the_one_after_it(history):
    a, _ = history
    ids = entry_ids(a)
    behind_the_back("DELETE FROM ledger_entries WHERE id = :id", id=ids[2])
    assert chain_problems() == [unlinked(a, ids[3], ids[1])]


def test_a_deleted_first_entry_is_named_by_the_new_first(history):
    a, _ = history
    ids = entry_ids(a)
    behind_the_back("DELETE FROM ledger_entries WHERE id = :id", id=ids[0])
    assert chain_problems() == [unlinked(a, ids[1], None)]


def test_a_deleted_last_entry_leaves_the_head_pointing_nowhere(history):
    a, _ = history
    ids = entry_ids(a)
    behind_the_back("DELETE FROM ledger_entries WHERE id = :id", id=ids[-1])
    assert chain_problems() == [bad_head(a, ids[-2])]


def test_an_entry_inserted_between_two_is_caught_by_the_one_after_it(history, make):
    a, b = history
    ids = entry_ids(a)
    # A gap in the ids (as a rolled-back posting leaves), then a real entry after it.
    gap = sql("SELECT nextval('ledger_entries_id_seq')")[0][0]
    make.fund(a, "1.00")
    later = entry_ids(a)[-1]
    assert later > gap and ledger_problems() == []
    tx = credit_of(b)
    # The forger's entry in the gap, validly chained onto the entry before it.
    forge_entry(tx, a, 1, 1, entry_id=gap, prev_of=ids[-1])
    assert chain_problems() == [unlinked(a, later, gap)]


def test_an_entry_appended_without_moving_the_head_is_caught(history):
    a, b = history
    ids = entry_ids(a)
    tx = credit_of(b)
    forged = forge_entry(tx, a, 1, 1, prev_of=ids[-1])
    assert chain_problems() == [bad_head(a, forged)]


def test_a_head_hash_changed_on_the_balance_row_is_caught(history):
    a, _ = history
    behind_the_back("UPDATE balances SET head_hash = repeat('0', 64) WHERE account_id = :a", a=str(a))
    assert chain_problems() == [bad_head(a, entry_ids(a)[-1])]
