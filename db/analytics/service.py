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
# to 366 days x the currencies in use, and a read to that many rollup rows x 16 shards.
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
