from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from flask import jsonify
from flask.views import MethodView

from api.balances.schemas import (
    AtTimeArgsSchema,
    AtTimeBalanceSchema,
    BalancePageSchema,
    BalanceSchema,
    CurrentArgsSchema,
    HistoricalArgsSchema,
    HistoricalPageSchema,
)
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session
from api.extensions.paging import capped_limit
from db.accounts import repository as accounts_repo
from db.accounts import service as accounts
from db.ledger import repository as ledger_repo
from db.pagination import decode_cursor, page

blp = Blueprint("balances", __name__, url_prefix="/balances", description="Balances")


@dataclasses.dataclass(frozen=True)
class HistoricalPoint:
    entry: object
    currency: str


@dataclasses.dataclass(frozen=True)
class AtTimeBalance:
    account: object
    at: datetime
    balance_minor: int


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    account: object
    balance_minor: int
    available_minor: int
    as_of: datetime


def _snapshots(views) -> list[_Snapshot]:
    now = datetime.now(UTC)
    return [_Snapshot(v.account, v.balance_minor, v.available_minor, now) for v in views]


@blp.route("/current")
class CurrentBalance(MethodView):
    @blp.login_required()
    @blp.arguments(CurrentArgsSchema, location="query")
    @blp.response(200, BalanceSchema)
    @blp.alt_response(200, schema=BalancePageSchema, description="without account_id: every visible account")
    @blp.documents_errors(404, 422)
    def get(self, args):
        """Current balance of one account, or (without `account_id`) a page of every account you may see.

        `balance` is what the ledger holds; `available_balance` is that minus pending outgoing
        amounts."""
        session = get_session()
        principal = current_principal()
        if args["account_id"]:
            account = accounts.visible_account(session, principal, args["account_id"])
            return _snapshots([accounts.view(session, account)])[0]
        limit = capped_limit(args["limit"])
        rows = accounts_repo.list_visible(
            session,
            owner_id=None if principal.sees_everything else principal.id,
            currency=None,
            kind=None if principal.sees_everything else "user",
            after=decode_cursor(args["cursor"], uuid.UUID),
            limit=limit,
        )
        rows, next_cursor = page(rows, limit, lambda row: row[0].id)
        # A Response, so that @blp.response does not dump the page again with BalanceSchema.
        return jsonify(
            BalancePageSchema().dump(
                {"items": _snapshots(accounts.views(session, rows)), "next_cursor": next_cursor}
            )
        )


@blp.route("/historical")
class HistoricalBalance(MethodView):
    @blp.login_required()
    @blp.arguments(HistoricalArgsSchema, location="query")
    @blp.response(200, HistoricalPageSchema)
    @blp.documents_errors(404, 422)
    @blp.reads_from_replica()
    def get(self, args):
        """The balance after each ledger entry, oldest first.

        Entries of `account_id` with `from <= created_at <= to` (both optional, inclusive,
        RFC 3339 with offset), each with the signed `amount` and the `balance` after it.
        Cursor-paginated: follow `next_cursor` until null."""
        session = get_session()
        account = accounts.visible_account(session, current_principal(), args["account_id"])
        limit = capped_limit(args["limit"])
        rows = ledger_repo.balance_history(
            session,
            account.id,
            since=args["from_"],
            until=args["to"],
            after_id=decode_cursor(args["cursor"], int),
            limit=limit,
        )
        rows, next_cursor = page(rows, limit, lambda entry: entry.id)
        return {"items": [HistoricalPoint(e, account.currency) for e in rows], "next_cursor": next_cursor}


@blp.route("/at-time")
class BalanceAtTime(MethodView):
    @blp.login_required()
    @blp.arguments(AtTimeArgsSchema, location="query")
    @blp.response(200, AtTimeBalanceSchema)
    @blp.documents_errors(404, 422)
    def get(self, args):
        """The balance as of an instant.

        The balance after the last entry created at or before `at` (RFC 3339 with offset;
        default now), or 0 before the account's first entry."""
        session = get_session()
        account = accounts.visible_account(session, current_principal(), args["account_id"])
        at = args["at"] or datetime.now(UTC)
        return AtTimeBalance(account, at, ledger_repo.balance_at(session, account.id, at))
