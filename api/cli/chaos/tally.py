"""What a chaos run ended with, read from PostgreSQL: every accepted request's status,
anything applied twice, `ledgerq verify`, and the verdict."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import text

FINAL = ("completed", "failed", "cancelled", "dead_lettered")
BATCH_FINAL = ("completed", "completed_with_errors", "failed", "cancelled")


@dataclass
class Tally:
    accepted_transfers: int = 0
    accepted_batches: int = 0
    batch_lines: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failed_by_code: Counter[str] = field(default_factory=Counter)
    dead_letter_reasons: list[str] = field(default_factory=list)
    batches_unfinished: int = 0
    applied_twice: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.accepted_transfers + self.batch_lines

    @property
    def still_pending(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in FINAL)

    def verdict(self) -> list[str]:
        """Why the run failed; [] when it passed."""
        reasons = []
        if self.applied_twice:
            reasons.append(f"{self.applied_twice} transactions applied twice")
        if self.still_pending or self.batches_unfinished:
            reasons.append(
                f"{self.still_pending} transactions and {self.batches_unfinished} batches not final in time"
            )
        if self.statuses["dead_lettered"]:
            reasons.append(f"{self.statuses['dead_lettered']} dead-lettered by transient faults")
        if self.problems:
            reasons.append(f"verify: {len(self.problems)} problems")
        return reasons


def _scalar_rows(session, statement: str, **params) -> list:
    return list(session.execute(text(statement), params).all())


def read(transfer_ids: list[str], batch_ids: list[str]) -> Tally:
    from db.ledger.verify import verify_ledger
    from db.session import unit_of_work

    tally = Tally(accepted_transfers=len(transfer_ids), accepted_batches=len(batch_ids))
    with unit_of_work() as uow:
        rows = _scalar_rows(
            uow.session,
            "SELECT status, failure_code, left(failure_message, 200), count(*) FROM transactions"
            " WHERE id = ANY(CAST(:ids AS uuid[])) OR batch_id = ANY(CAST(:batches AS uuid[]))"
            " GROUP BY 1, 2, 3",
            ids=transfer_ids,
            batches=batch_ids,
        )
        for status, code, message, count in rows:
            tally.statuses[status] += count
            if status == "failed":
                tally.failed_by_code[code or "?"] += count
            if status == "dead_lettered":
                tally.dead_letter_reasons.append(f"{count} x {message}")
        tally.batch_lines = sum(
            n
            for (n,) in _scalar_rows(
                uow.session,
                "SELECT count(*) FROM transactions WHERE batch_id = ANY(CAST(:batches AS uuid[]))",
                batches=batch_ids,
            )
        )
        tally.batches_unfinished = _scalar_rows(
            uow.session,
            "SELECT count(*) FROM batches WHERE id = ANY(CAST(:batches AS uuid[])) AND NOT status = ANY(:final)",
            batches=batch_ids,
            final=list(BATCH_FINAL),
        )[0][0]
        # Applied twice: more entries than one posting writes, or entries on a row that
        # is not completed (every transaction here is a two-entry transfer).
        tally.applied_twice = _scalar_rows(
            uow.session,
            "SELECT count(*) FROM (SELECT e.transaction_id FROM ledger_entries e"
            " JOIN transactions t ON t.id = e.transaction_id GROUP BY e.transaction_id, t.status"
            " HAVING count(*) > 2 OR t.status <> 'completed') doubled",
        )[0][0]
        tally.problems = verify_ledger(uow.session)
    return tally


def wait_final(transfer_ids: list[str], batch_ids: list[str], timeout: float) -> float:
    """Poll until every accepted request is final (or `timeout`); the seconds it took."""
    from db.session import unit_of_work

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with unit_of_work() as uow:
                open_rows = _scalar_rows(
                    uow.session,
                    "SELECT (SELECT count(*) FROM transactions WHERE (id = ANY(CAST(:ids AS uuid[]))"
                    " OR batch_id = ANY(CAST(:batches AS uuid[]))) AND NOT status = ANY(:final))"
                    " + (SELECT count(*) FROM batches WHERE id = ANY(CAST(:batches AS uuid[]))"
                    " AND NOT status = ANY(:batch_final))",
                    ids=transfer_ids,
                    batches=batch_ids,
                    final=list(FINAL),
                    batch_final=list(BATCH_FINAL),
                )[0][0]
        except Exception:  # noqa: BLE001 - a terminated connection: poll again
            open_rows = -1
        if open_rows == 0:
            break
        time.sleep(1)
    return time.monotonic() - started


def render(
    tally: Tally, *, faults: Counter[str], restarts: Counter[str], settle_s: float, extra: dict
) -> str:
    lines = [
        "ledgerq chaos",
        *(f"  {key}: {value}" for key, value in extra.items()),
        f"  faults injected: {sum(faults.values())} ({', '.join(f'{k} {v}' for k, v in sorted(faults.items())) or 'none'})",
        f"  process restarts: {', '.join(f'{k} {v}' for k, v in sorted(restarts.items())) or 'none'}",
        f"  accepted: {tally.accepted} ({tally.accepted_transfers} transfers, "
        f"{tally.accepted_batches} batches with {tally.batch_lines} lines)",
        f"  completed: {tally.statuses['completed']}",
        f"  failed: {tally.statuses['failed']} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(tally.failed_by_code.items())) or 'none'})",
        f"  cancelled: {tally.statuses['cancelled']}",
        f"  dead-lettered: {tally.statuses['dead_lettered']}",
        *(f"    {reason}" for reason in tally.dead_letter_reasons),
        f"  still pending: {tally.still_pending} (batches not final: {tally.batches_unfinished})",
        f"  applied twice: {tally.applied_twice}",
        f"  final within: {settle_s:.0f} s after the load stopped",
        f"  invariants (verify): {'ok' if not tally.problems else f'{len(tally.problems)} problems'}",
        *(f"    {problem}" for problem in tally.problems[:20]),
    ]
    reasons = tally.verdict()
    lines.append("  verdict: " + ("PASS" if not reasons else "FAIL: " + "; ".join(reasons)))
    return "\n".join(lines)
