"""POST /transactions/transfer|credit|debit -> 202 with a durable `pending` row; the
worker decides. GET with ?wait=N long-polls until the status is final."""

from __future__ import annotations

import re
import time

from flask import current_app, g, request
from flask.views import MethodView

from api.docs import TRANSACTION_422
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.extensions.paging import capped_limit
from api.transactions.schemas import (
    HistoryArgsSchema,
    SingleAccountSchema,
    TransactionPageSchema,
    TransactionSchema,
    TransferSchema,
    WaitArgsSchema,
)
from db.accounts import service as accounts
from db.core.errors import NotFound, ValidationFailed
from db.models import FINAL_STATUSES, Transaction
from db.pagination import decode_cursor, page
from db.transactions import repository as transactions_repo
from db.transactions.service import MoneyMovement, Submitted, cancel, reverse, submit

blp = Blueprint(
    "transactions", __name__, url_prefix="/transactions", description="Money movement (asynchronous)"
)

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
_IDEMPOTENCY_DOC = {
    "parameters": [
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "Same key + same body replays the original 202 (header Idempotent-Replayed: true); "
            "same key + different body is 422 idempotency_key_reused. Scoped to the user, kept >= 30 days.",
        }
    ]
}


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed.field("Idempotency-Key", "must be 1-255 printable characters without spaces")
    return key


def _accept(movement: MoneyMovement):
    """Record the request durably, then (after commit) enqueue it: the 202 promise."""
    uow = get_uow()
    result = submit(
        uow.session,
        current_principal(),
        movement,
        idempotency_key=_idempotency_key(),
        settings=current_app.config["LEDGERQ_SETTINGS"],
        request_id=g.request_id,
    )
    return _enqueue_and_commit(result)


def _enqueue_and_commit(result: Submitted):
    from workers.transactions import apply_transaction

    uow = get_uow()
    tx = result.transaction
    if not result.replayed and tx.status == "pending":
        uow.enqueue(apply_transaction, transaction_id=str(tx.id))
    with_reversed_by(uow.session, [tx])  # a replayed original may have been reversed since
    uow.commit()
    headers = {"Location": f"/api/v1/transactions/{tx.id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return tx, 202, headers


def _movement(kind: str, data: dict) -> MoneyMovement:
    return MoneyMovement(type=kind, **data)


@blp.route("/transfer")
class Transfer(MethodView):
    @blp.login_required()
    @blp.doc(**_IDEMPOTENCY_DOC)
    @blp.arguments(TransferSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 413, 422, 503, codes={422: TRANSACTION_422})
    def post(self, data):
        """Move money between two accounts of one currency (from your own account).

        Answers 202 with a durable `pending` transaction (or `scheduled` with a future
        `scheduled_for`) and a `Location` to poll; a worker applies it atomically and it ends
        `completed` or `failed` with a `failure_code`. Rules broken up front are a 4xx with a
        stable `code`. Send an `Idempotency-Key` so a retry never moves money twice."""
        return _accept(_movement("transfer", data))


@blp.route("/credit")
class Credit(MethodView):
    @blp.login_required("finance", "admin")
    @blp.doc(**_IDEMPOTENCY_DOC)
    @blp.arguments(SingleAccountSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 413, 422, 503, codes={422: TRANSACTION_422})
    def post(self, data):
        """Money in (finance/admin): from the currency's `external` account to `account_id`.

        202 with a `pending` transaction and a `Location`, applied by a worker like a transfer.
        Credits are not subject to the outgoing limits. Use an `Idempotency-Key`."""
        return _accept(_movement("credit", data))


@blp.route("/debit")
class Debit(MethodView):
    @blp.login_required()
    @blp.doc(**_IDEMPOTENCY_DOC)
    @blp.arguments(SingleAccountSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 413, 422, 503, codes={422: TRANSACTION_422})
    def post(self, data):
        """Money out (owner or finance/admin): from `account_id` to the currency's `external` account.

        202 with a `pending` transaction and a `Location`; the worker fails it
        `insufficient_funds` when the balance (plus overdraft) does not cover it. Outgoing
        limits apply. Use an `Idempotency-Key`."""
        return _accept(_movement("debit", data))


@blp.route("/history")
class History(MethodView):
    @blp.login_required()
    @blp.arguments(HistoryArgsSchema, location="query")
    @blp.response(200, TransactionPageSchema)
    @blp.documents_errors(404, 422)
    @blp.reads_from_replica()
    def get(self, args):
        """Transaction history, newest first.

        Customers see transactions touching their accounts; finance/admin see all. Filters:
        `account_id`, `status`, `type`, `batch_id`, and `from`/`to` (inclusive, RFC 3339 with
        offset). Cursor-paginated: follow `next_cursor` until null."""
        principal = current_principal()
        session = get_session()
        if args["account_id"]:
            accounts.visible_account(session, principal, args["account_id"])
        limit = capped_limit(args["limit"])
        rows = transactions_repo.history(
            session,
            owner_id=None if principal.sees_everything else principal.id,
            account_id=args["account_id"],
            status=args["status"],
            type_=args["type"],
            batch_id=args["batch_id"],
            created_from=args["from_"],
            created_to=args["to"],
            before_seq=decode_cursor(args["cursor"], int),
            limit=limit,
        )
        rows, next_cursor = page(rows, limit, lambda tx: tx.seq)
        with_reversed_by(session, rows)
        return {"items": rows, "next_cursor": next_cursor}


@blp.route("/<uuid:transaction_id>")
class TransactionById(MethodView):
    @blp.login_required()
    @blp.arguments(WaitArgsSchema, location="query")
    @blp.response(200, TransactionSchema)
    @blp.documents_errors(404, 422)
    def get(self, args, transaction_id):
        """One transaction; `?wait=N` (0-30 s) long-polls until the status is final.

        Parties to the transaction (and finance/admin) see it; anyone else gets 404. With
        `wait`, the answer comes as soon as the worker decides (`completed`, `failed`, ...) or
        after N seconds with the status as it is: poll this rather than looping tightly."""
        settings = current_app.config["LEDGERQ_SETTINGS"]
        session = get_session()
        tx = visible_transaction(session, transaction_id)
        deadline = time.monotonic() + min(args["wait"], settings.long_poll_max_s)
        interval = 0.05
        while tx.status not in FINAL_STATUSES and time.monotonic() < deadline:
            # Release the connection between polls; each poll sees the latest commit.
            session.rollback()
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, 0.5)
            session.refresh(tx)
        return with_reversed_by(session, [tx])[0]


@blp.route("/<uuid:transaction_id>/cancel")
class CancelTransaction(MethodView):
    @blp.login_required()
    @blp.response(200, TransactionSchema)
    @blp.documents_errors(404, 409, 503)
    def post(self, transaction_id):
        """Cancel a `scheduled` or `pending` transaction that is not being applied yet.

        Decided under the transaction's row lock, the same lock the worker takes to apply
        it: a cancelled transaction never moves money, whatever the timing. Anything else
        (completed, failed, already cancelled, being applied) is 409 `conflict`. Customers
        cancel only transactions they sent."""
        uow = get_uow()
        tx = cancel(uow.session, current_principal(), transaction_id, request_id=g.request_id)
        uow.commit()
        return tx


@blp.route("/<uuid:transaction_id>/reverse")
class ReverseTransaction(MethodView):
    @blp.login_required("finance", "admin")
    @blp.doc(**_IDEMPOTENCY_DOC)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(
        404,
        409,
        422,
        503,
        codes={
            409: "`conflict`: the transaction is not `completed`, was already reversed, is itself "
            "a reversal, or is being processed right now",
            422: "`account_inactive` (an account of the original is frozen or closed), "
            "`insufficient_funds` (the original recipient no longer holds the amount), "
            "`idempotency_key_reused`, `validation_error` (Idempotency-Key format)",
        },
    )
    def post(self, transaction_id):
        """Move a `completed` transaction's money back (finance/admin).

        202 with a new `pending` `reversal` (from the original's `to_account_id` to its
        `from_account_id`, same amount, `reverses` = the original's id), applied by the worker
        like any transaction.

        The original stays `completed` and shows `reversed_by`. A transaction is reversed at
        most once; a reversal cannot be reversed. The worker applies the transfer rules except
        the outgoing limits: the reversal fails `insufficient_funds` if the recipient no longer
        holds the money (checked at request time as well, 422) and `account_inactive` if an
        account was frozen meanwhile. A failed reversal still counts as the one reversal."""
        uow = get_uow()
        result = reverse(
            uow.session,
            current_principal(),
            transaction_id,
            idempotency_key=_idempotency_key(),
            request_id=g.request_id,
        )
        return _enqueue_and_commit(result)


def with_reversed_by(session, txs: list[Transaction]) -> list[Transaction]:
    """Set `reversed_by` (the id of the transaction's reversal, or None) on each of `txs`
    for TransactionSchema: one query for the whole list."""
    found = transactions_repo.reversed_by(session, [tx.id for tx in txs])
    for tx in txs:
        setattr(tx, "reversed_by", found.get(tx.id))  # noqa: B010 - not a column; mypy-clean
    return txs


def visible_transaction(session, transaction_id) -> Transaction:
    tx = transactions_repo.get(session, transaction_id)
    principal = current_principal()
    if tx is None:
        raise NotFound("transaction not found")
    if not principal.sees_everything:
        own = {
            a.id
            for a in (
                accounts.accounts_repo.get(session, tx.from_account_id),
                accounts.accounts_repo.get(session, tx.to_account_id),
            )
            if a is not None and a.owner_id == principal.id
        }
        if not own:
            raise NotFound("transaction not found")
    return tx
