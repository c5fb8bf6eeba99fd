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
from db.accounts import service as accounts
from db.ledger import repository as ledger_repo

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
    @blp.keyset_page(lambda row: row[0].id, cursor=uuid.UUID)
    @blp.response(200, BalanceSchema)
    @blp.alt_response(200, schema=BalancePageSchema, description="without account_id: every visible account")
    # One status, two shapes: say so (the alt_response alone hid the single-account one).
    @blp.doc(
        responses={
            "200": {
                "description": "with account_id: that account's Balance; without: a BalancePage",
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/Balance"},
                                {"$ref": "#/components/schemas/BalancePage"},
                            ]
                        }
                    }
                },
            }
        }
    )
    @blp.documents_errors(404, 422)
    def get(self, args, page):
        """Current balance of one account, or (without `account_id`) a page of every account you may see.

        `balance` is what the ledger holds; `available_balance` is that minus pending outgoing
        amounts and what the account's `held` holds reserve."""
        session = get_session()
        principal = current_principal()
        if args["account_id"]:
            return _snapshots([accounts.visible_view(session, principal, args["account_id"])])[0]
        body = accounts.list_visible(session, principal, page)
        body["items"] = _snapshots(body["items"])
        # A Response, so that @blp.response does not dump the page again with BalanceSchema.
        return jsonify(BalancePageSchema().dump(body))


@blp.route("/historical")
class HistoricalBalance(MethodView):
    @blp.login_required()
    @blp.arguments(HistoricalArgsSchema, location="query")
    @blp.keyset_page(lambda entry: entry.id)
    @blp.response(200, HistoricalPageSchema)
    @blp.documents_errors(404, 422)
    @blp.reads_from_replica()
    def get(self, args, page):
        """The balance after each ledger entry, oldest first.

        Entries of `account_id` with `from <= created_at <= to` (both optional, inclusive,
        RFC 3339 with offset), each with the signed `amount` and the `balance` after it.
        Cursor-paginated: follow `next_cursor` until null."""
        session = get_session()
        account = accounts.visible_account(session, current_principal(), args["account_id"])
        rows = ledger_repo.balance_history(
            session, account.id, since=args["from_"], until=args["to"], after_id=page.after, limit=page.limit
        )
        return page.of(rows, lambda entries: [HistoricalPoint(e, account.currency) for e in entries])


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
