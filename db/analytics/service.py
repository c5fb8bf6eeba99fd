"""Analytics figures for the API and the CLI: who may see which account's figures,
amounts as integers of minor units, and the rebuild of the rollups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.accounts import service as accounts
from db.analytics import repository
from db.core.principal import Principal
from db.models import Account

# The longest range one call may ask for, inclusive (a leap year): it bounds a response
# to 366 days x the currencies in use, and a read to that many rollup rows (closed days
# folded to one row each, today's 16 shards plus one per backend that decided
# groups before locking: migration 0019).
MAX_RANGE_DAYS = 366
# Without `from`/`to`: the 30 days up to today (UTC).
DEFAULT_RANGE_DAYS = 30


@dataclass(frozen=True)
class DailyFigure:
    day: date
    currency: str
    count: int
    completed: int
    failed: int
    volume_minor: int


@dataclass(frozen=True)
class AccountFigures:
    account: Account
    since: date
    until: date
    incoming_minor: int
    outgoing_minor: int
    count: int


def daily(session: Session, since: date, until: date, currency: str | None) -> list[DailyFigure]:
    """Per UTC day of creation and currency, only days with a transaction created."""
    return [
        DailyFigure(day, code, int(created), int(completed), int(failed), int(volume))
        for day, code, created, completed, failed, volume in repository.daily(session, since, until, currency)
    ]


def account_figures(
    session: Session, principal: Principal, account_id: uuid.UUID, since: date, until: date
) -> AccountFigures:
    """Money into and out of the account over the UTC days of its ledger entries; 404
    for an account the principal may not see."""
    account = accounts.visible_account(session, principal, account_id)
    incoming, outgoing, count = repository.account_totals(session, account.id, since, until)
    return AccountFigures(account, since, until, incoming, outgoing, count)


def rebuild(session: Session) -> tuple[int, int]:
    """Recompute the rollups from `transactions` and `ledger_entries` while the system
    runs, without stopping a writer: every row that disagrees with a direct recount is
    corrected by the difference (`repository.correct_rollups` says why that is exact
    under concurrent postings). Returns the rows corrected (daily, per account)."""
    # An operator's full pass over the history: not bound by the request-sized timeout.
    session.execute(text("SET LOCAL statement_timeout = 0"))
    return repository.correct_rollups(session)


# Days per fold statement: a month of closed days (some 16 x currencies rows each) keeps
# each statement, and the locks it holds, to milliseconds.
FOLD_BATCH_DAYS = 31
# The fold waits for a writer only on a day's shard 0 (its own upsert); past this it
# gives up (the next fold retries) rather than hold its taken rows while a writer
# queues behind them: well under `deadlock_timeout` (1 s), so in the rare cycle with a
# writer the fold is the one that rolls back, never a posting.
FOLD_LOCK_TIMEOUT = "200ms"


def fold_closed_days(session: Session, days: int = FOLD_BATCH_DAYS) -> int:
    """Fold the shards of up to `days` closed days (before today, UTC, by the database's
    clock) into one row per (day, currency), so a long range reads one row per day
    instead of 16; reads sum the shards either way, so the figures do not change. The
    (day, currency) rows written, 0 when nothing was left."""
    session.execute(text(f"SET LOCAL lock_timeout = '{FOLD_LOCK_TIMEOUT}'"))
    return repository.fold_closed_days(session, days)
