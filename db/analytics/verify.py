"""`ledgerq verify`'s analytics check: the rollups agree with a direct recount.

The whole history, not a recent window: the recount is one GROUP BY over `transactions`
and one over `ledger_entries`, the same kind of full pass the ledger checks beside it
make (check_entries_per_transaction), and each comparison is a single statement, so it
reads the rollups and the rows they count in one snapshot, also while money moves."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.analytics import repository


def check_analytics_rollups(session: Session) -> list[str]:
    problems = [
        f"daily {day} {currency}: the rollup says (count, completed, failed, volume_minor) "
        f"{tuple(int(x) for x in row[2:6])}, the transactions {tuple(int(x) for x in row[6:])} "
        "(`ledgerq analytics rebuild` corrects it)"
        for row in repository.daily_mismatches(session)
        for day, currency in [row[:2]]
    ]
    problems += [
        f"account {account_id} on {day}: the rollup says (incoming_minor, outgoing_minor, count) "
        f"{tuple(int(x) for x in row[2:5])}, the ledger entries {tuple(int(x) for x in row[5:])} "
        "(`ledgerq analytics rebuild` corrects it)"
        for row in repository.account_mismatches(session)
        for account_id, day in [row[:2]]
    ]
    return problems
