"""POST /transactions/transfer|credit|debit -> 202 with a durable `pending` row; the
worker decides. GET with ?wait=N long-polls until the status is final."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from api.docs import EXCHANGE_409, EXCHANGE_422, TRANSACTION_422
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.transactions.long_poll import wait_final
from api.transactions.schemas import (
    ExchangeSchema,
    HistoryArgsSchema,
    SingleAccountSchema,
    TransactionPageSchema,
    TransactionSchema,
    TransferSchema,
    WaitArgsSchema,
)
from db.idempotency import Submitted
from db.models import Transaction
from db.transactions import views as transaction_views
from db.transactions.service import MoneyMovement, cancel, reverse, submit

blp = Blueprint(
    "transactions", __name__, url_prefix="/transactions", description="Money movement (asynchronous)"
)


def _accept(movement: MoneyMovement, idempotency_key: str | None):
    """Record the request durably, then (after commit) enqueue it: the 202 promise."""
    uow = get_uow()
    result = submit(
        uow.session,
        current_principal(),
        movement,
        idempotency_key=idempotency_key,
        settings=current_app.config["LEDGERQ_SETTINGS"],
        request_id=g.request_id,
    )
    return _enqueue_and_commit(result)


def _enqueue_and_commit(result: Submitted[Transaction]):
    from workers.transactions import apply_transaction

    uow = get_uow()
    tx = result.record
    if not result.replayed and tx.status == "pending":
        uow.enqueue(apply_transaction, transaction_id=str(tx.id))
    body = transaction_views.view(
        uow.session, current_principal(), tx
    )  # a replayed original may have been reversed since
    uow.commit()
    return body, result, f"/api/v1/transactions/{tx.id}"


def _movement(kind: str, data: dict) -> MoneyMovement:
    return MoneyMovement(type=kind, **data)


@blp.route("/transfer")
class Transfer(MethodView):
    @blp.login_required()
    @blp.arguments(TransferSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 413, 422, 503, codes={422: TRANSACTION_422})
    @blp.idempotent
    def post(self, data, idempotency_key):
        """Move money between two accounts of one currency (from your own account).

        Answers 202 with a durable `pending` transaction (or `scheduled` with a future
        `scheduled_for`) and a `Location` to poll; a worker applies it atomically and it ends
        `completed` or `failed` with a `failure_code`. Rules broken up front are a 4xx with a
        stable `code`. Send an `Idempotency-Key` so a retry never moves money twice."""
        return _accept(_movement("transfer", data), idempotency_key)


@blp.route("/credit")
class Credit(MethodView):
    @blp.login_required("finance", "admin")
    @blp.arguments(SingleAccountSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 413, 422, 503, codes={422: TRANSACTION_422})
    @blp.idempotent
    def post(self, data, idempotency_key):
        """Money in (finance/admin): from the currency's `external` account to `account_id`.

        202 with a `pending` transaction and a `Location`, applied by a worker like a transfer.
        Credits are not subject to the outgoing limits. Use an `Idempotency-Key`."""
        return _accept(_movement("credit", data), idempotency_key)


@blp.route("/debit")
class Debit(MethodView):
    @blp.login_required()
    @blp.arguments(SingleAccountSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 413, 422, 503, codes={422: TRANSACTION_422})
    @blp.idempotent
    def post(self, data, idempotency_key):
        """Money out (owner or finance/admin): from `account_id` to the currency's `external` account.

        202 with a `pending` transaction and a `Location`; the worker fails it
        `insufficient_funds` when the balance (plus overdraft) does not cover it. Outgoing
        limits apply. Use an `Idempotency-Key`."""
        return _accept(_movement("debit", data), idempotency_key)


@blp.route("/exchange")
class Exchange(MethodView):
    @blp.login_required()
    @blp.arguments(ExchangeSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 409, 413, 422, 503, codes={409: EXCHANGE_409, 422: EXCHANGE_422})
    @blp.idempotent
    def post(self, data, idempotency_key):
        """Exchange money into an account of another currency (from your own account).

        The pair's current rate and fee are fixed now and shown on the 202:
        `fee = amount x fee_bps / 10000` and `to_amount = (amount - fee) x rate`, each
        rounded toward zero to its currency's decimals. Send the `rate` you were quoted
        (GET /fx/rates/{base}/{quote}) to get 409 `rate_changed` rather than another rate.
        A worker applies it atomically like a transfer (same rules, limits on `amount`):
        the source pays `amount`, the target receives `to_amount`, through each currency's
        `fx` system account, the fee to the source currency's `fees` account."""
        return _accept(_movement("exchange", data), idempotency_key)


@blp.route("/history")
class History(MethodView):
    @blp.login_required()
    @blp.arguments(HistoryArgsSchema, location="query")
    @blp.keyset_page(lambda tx: tx.seq)
    @blp.response(200, TransactionPageSchema)
    @blp.documents_errors(404, 422)
    @blp.reads_from_replica()
    def get(self, args, page):
        """Transaction history, newest first.

        Customers see transactions touching their accounts; finance/admin see all. Filters:
        `account_id`, `status`, `type`, `batch_id`, and `from`/`to` (inclusive, RFC 3339 with
        offset). Cursor-paginated: follow `next_cursor` until null."""
        return transaction_views.history(
            get_session(),
            current_principal(),
            page,
            account_id=args["account_id"],
            status=args["status"],
            type_=args["type"],
            batch_id=args["batch_id"],
            created_from=args["from_"],
            created_to=args["to"],
        )


@blp.route("/<uuid:transaction_id>")
class TransactionById(MethodView):
    @blp.login_required()
    @blp.arguments(WaitArgsSchema, location="query")
    @blp.response(200, TransactionSchema)
    @blp.documents_errors(
        404,
        422,
        429,
        codes={
            429: "`rate_limited`: more concurrent `?wait=` long-polls than `LEDGERQ_LONG_POLLS_PER_USER` (10)"
        },
    )
    def get(self, args, transaction_id):
        """One transaction; `?wait=N` (0-30 s) long-polls until the status is final.

        Parties to the transaction (and finance/admin) see it; anyone else gets 404. With
        `wait`, the answer comes as soon as the worker decides (`completed`, `failed`, ...) or
        after N seconds with the status as it is: poll this rather than looping tightly.

        A counterparty (a customer who neither created it nor owns its source account)
        gets a reduced view: `reference`, `metadata`, `idempotency_key`, `failure_code`
        and `failure_message` are null, here and in the history."""
        settings = current_app.config["LEDGERQ_SETTINGS"]
        session = get_session()
        principal = current_principal()
        tx = transaction_views.visible(session, principal, transaction_id)
        seconds = min(args["wait"], settings.long_poll_max_s)
        wait_final(session, tx, user_id=principal.id, seconds=seconds, settings=settings)
        return transaction_views.view(session, principal, tx)


@blp.route("/<uuid:transaction_id>/cancel")
class CancelTransaction(MethodView):
    @blp.login_required()
    @blp.response(200, TransactionSchema)
    @blp.documents_errors(404, 409, 503)
    def post(self, transaction_id):
        """Cancel a transaction that is not being applied yet.

        A `scheduled`, `pending` or `dead_lettered` one (a cancelled dead letter can no
        longer be retried, so a client that re-sent the transfer is never paid twice).
        Decided under the transaction's row lock, the same lock the worker takes to apply
        it: a cancelled transaction never moves money, whatever the timing. Anything else
        (completed, failed, already cancelled, being applied) is 409 `conflict`. Customers
        cancel only transactions they created; a batch line is 409 for everyone (cancel
        the batch)."""
        uow = get_uow()
        tx = cancel(uow.session, current_principal(), transaction_id, request_id=g.request_id)
        uow.commit()
        return tx


@blp.route("/<uuid:transaction_id>/reverse")
class ReverseTransaction(MethodView):
    @blp.login_required("finance", "admin")
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
    @blp.idempotent
    def post(self, transaction_id, idempotency_key):
        """Reverse a completed transaction (finance/admin).

        202 with a new `pending` `reversal` (from the original's `to_account_id` to its
        `from_account_id`, same amount, `reverses` = the original's id), applied by the
        worker like any transaction. The original stays `completed` and shows `reversed_by`. A transaction is reversed at
        most once; a reversal cannot be reversed. The worker applies the transfer rules except
        the outgoing limits: the reversal fails `insufficient_funds` if the recipient no longer
        holds the money (checked at request time as well, 422) and `account_inactive` if an
        account was frozen meanwhile. A failed reversal still counts as the one reversal."""
        uow = get_uow()
        result = reverse(
            uow.session,
            current_principal(),
            transaction_id,
            idempotency_key=idempotency_key,
            request_id=g.request_id,
        )
        return _enqueue_and_commit(result)
