"""`ledgerq verify` as operators run it: a separate process against the live database,
exit 0 when every invariant holds, exit 1 with a report that names what is wrong."""

from __future__ import annotations

import os
import subprocess

import pytest
from sqlalchemy import text

from db.session import get_engine
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import wait_final
from tests.fixtures.processes import LEDGERQ

pytestmark = pytest.mark.slow


def run_verify(cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LEDGERQ, "verify"],
        env={**os.environ, "LOG_FORMAT": "json"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_passes_on_a_sound_ledger_and_names_a_corrupted_balance(client, make, worker, tmp_path):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    tx_ids = []
    for amount in ("30.25", "19.75", "500.00"):  # the last one fails: insufficient funds
        tx_ids.append(accepted(transfer(client, alice, a, b, amount)))
    assert sorted(wait_final(tx_ids).values()) == ["completed", "completed", "failed"]

    sound = run_verify(tmp_path)
    assert sound.returncode == 0, sound.stderr
    assert "ledger OK" in sound.stdout

    # The balance row is a cached copy of the sum of the account's entries: corrupt it.
    with get_engine().begin() as connection:
        connection.execute(
            text("UPDATE balances SET balance_minor = balance_minor + 1 WHERE account_id = :id"), {"id": b}
        )

    broken = run_verify(tmp_path)
    assert broken.returncode == 1, (broken.stdout, broken.stderr)
    assert "ledger OK" not in broken.stdout
    report = broken.stderr
    assert "FAILED" in report
    # Names the account, with the stored balance and what the entries say it should be.
    assert f"account {b}: balance 50.01 but entries sum to 50.00" in report, report
    # And the per-currency zero-sum invariant breaks with it.
    assert "currency USD: balances sum to 0.01, not 0" in report, report


def test_rebuild_balances_repairs_a_corrupted_balance_from_the_entries(make, tmp_path):
    alice = make.user()
    a = make.account(alice, balance="50.00")
    with get_engine().begin() as connection:
        connection.execute(
            text("UPDATE balances SET balance_minor = balance_minor + 7 WHERE account_id = :id"), {"id": a}
        )
    env = {**os.environ, "LOG_FORMAT": "json"}

    dry = subprocess.run(
        [LEDGERQ, "rebuild-balances", "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0 and f"account {a}: 50.07 -> 50.00 USD" in dry.stdout
    assert run_verify(tmp_path).returncode == 1  # the dry run changed nothing

    fixed = subprocess.run(
        [LEDGERQ, "rebuild-balances"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert fixed.returncode == 0 and "corrected 1 balance(s)" in fixed.stdout
    assert run_verify(tmp_path).returncode == 0
    with get_engine().begin() as connection:
        audited = connection.execute(
            text("SELECT count(*) FROM audit_logs WHERE action = 'balance.rebuilt' AND entity_id = :id"),
            {"id": str(a)},
        ).scalar_one()
    assert audited == 1
