"""`ledgerq verify`'s analytics check: the rollups agree with a direct recount.

The whole history, not a recent window: the recount is one GROUP BY over `transactions`
and one over `ledger_entries`, the same kind of full pass the ledger checks beside it
make (check_entries_per_transaction), and each comparison is a single statement, so it
reads the rollups and the rows they count in one snapshot, also while money moves."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.analytics import repository


def check_analytics_rollups(session: Session) -> list[str]:
    def figures(values) -> tuple[int, ...]:
        return tuple(int(value) for value in values)

    problems = [
        f"daily {row[0]} {row[1]}: the rollup says (count, completed, failed, volume_minor) "
        f"{figures(row[2:6])}, the transactions {figures(row[6:])} (`ledgerq analytics rebuild` corrects it)"
        for row in repository.daily_mismatches(session)
    ]
    problems += [
        f"account {row[0]} on {row[1]}: the rollup says (incoming_minor, outgoing_minor, count) "
        f"{figures(row[2:5])}, the ledger entries {figures(row[5:])} (`ledgerq analytics rebuild` corrects it)"
        for row in repository.account_mismatches(session)
    ]
    return problems
