"""`ledgerq accounts list|show`, `ledgerq transactions list|show`: the database's view,
in the API's own JSON with --json."""

from __future__ import annotations

import json

from click.testing import CliRunner

from api.cli import main
from tests.fixtures.builders import pending_transfer
from tests.fixtures.ledger import apply_now


def _run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_accounts_list_and_show(make):
    alice = make.user()
    main_account, savings = make.account(alice, balance="12.50"), make.account(alice)
    listed = json.loads(_run("accounts", "list", "--owner", str(alice.id), "--json"))
    assert {a["id"]: a["balance"] for a in listed} == {str(main_account): "12.50", str(savings): "0.00"}
    text = _run("accounts", "list", "--owner", str(alice.id))
    assert "2 account(s)" in text and str(main_account) in text and "12.50" in text

    shown = json.loads(_run("accounts", "show", str(main_account), "--json"))
    assert shown["owner_id"] == str(alice.id) and shown["available_balance"] == "12.50"
    assert "available_balance: 12.50" in _run("accounts", "show", str(main_account))


def test_transactions_list_and_show(make):
    alice = make.user()
    source, target = make.account(alice, balance="10.00"), make.account(alice)
    tx_id = pending_transfer(alice, source, target, "3.00")
    assert apply_now(tx_id) == "completed"
    listed = json.loads(_run("transactions", "list", "--account", str(target), "--json"))
    assert [(t["id"], t["status"], t["amount"]) for t in listed] == [(tx_id, "completed", "3.00")]
    assert (
        json.loads(_run("transactions", "list", "--account", str(target), "--status", "failed", "--json"))
        == []
    )

    shown = json.loads(_run("transactions", "show", tx_id, "--json"))
    assert shown["status"] == "completed"
    assert sorted((e["account_id"], e["amount"]) for e in shown["entries"]) == sorted(
        [(str(source), "-3.00"), (str(target), "3.00")]
    )
    text = _run("transactions", "show", tx_id)
    assert "status: completed" in text and "entries: 2" in text


def test_unknown_ids_are_an_error():
    missing = "00000000-0000-4000-8000-000000000000"
    for group in ("accounts", "transactions"):
        result = CliRunner().invoke(main, [group, "show", missing])
        assert result.exit_code == 1 and f"no {group[:-1]} {missing}" in result.output
