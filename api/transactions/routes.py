"""POST /transactions/transfer|credit|debit|hold -> 202 with a durable `pending` row; the
worker decides. GET with ?wait=N long-polls until the status is final. A hold's capture
(202) and void (200) are here too (db/holds)."""

from __future__ import annotations

from flask import current_app, g, jsonify
from flask.views import MethodView

from api.docs import EXCHANGE_409, EXCHANGE_422, TRANSACTION_422
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.transactions.long_poll import wait_final
from api.transactions.schemas import (
    CaptureSchema,
    ExchangeSchema,
    HistoryArgsSchema,
    HoldSchema,
    SingleAccountSchema,
    TransactionPageSchema,
    TransactionSchema,
    TransferSchema,
    WaitArgsSchema,
)
from db.events import render
from db.holds import service as holds_service
from db.idempotency import Submitted
from db.models import Transaction
from db.transactions import views as transaction_views
from db.transactions.service import MoneyMovement, cancel, reverse, submit

blp = Blueprint(
    "transactions", __name__, url_prefix="/transactions", description="Money movement (asynchronous)"
)


def _accept(movement: MoneyMovement, idempotency_key: str | None):
    """Record the request durably, then (after commit) enqueue it: the 202 promise.

    A transfer or a hold is recorded by one statement (its row, audit row and event
    together, db/transactions/recording.py) with no lock held, so it runs without an
    explicit transaction. Credits, debits and exchanges may first create a system account
    (its account and balance rows, two statements: db/accounts/repository.py
    `system_account`), so they keep theirs: autocommit there could commit an account
    without its balance row.

    Without a transaction the row is committed when `submit` returns: nothing between
    it and the 202 may fail (`view_of_new` reads nothing; the send after "commit" never
    raises, and a lost send is recovered by the sweeper)."""
    uow = get_uow()
    if movement.type in ONE_STATEMENT_TYPES:
        uow.without_transaction()
    result = submit(
        uow.session,
        current_principal(),
        movement,
        idempotency_key=idempotency_key,
        settings=current_app.config["LEDGERQ_SETTINGS"],
        request_id=g.request_id,
    )
    return _enqueue_and_commit(result)


# Types whose accept path writes exactly one statement (see `_accept`).
ONE_STATEMENT_TYPES = frozenset({"transfer", "hold"})


def _enqueue_and_commit(result: Submitted[Transaction]):
    from workers.transactions import wake_up_for_new_row

    uow = get_uow()
    tx = result.record
    if not result.replayed and tx.status == "pending":
        # Sent only when no wake-up is queued already; a queued one claims this row.
        uow.enqueue(wake_up_for_new_row, transaction_id=str(tx.id))
    # A replayed original may have been reversed since; a new one cannot have been.
    body = (
        transaction_views.view(uow.session, current_principal(), tx)
        if result.replayed
        else transaction_views.view_of_new(tx)
    )
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
        shown = transaction_views.shown(session, principal, transaction_id)
        seconds = min(args["wait"], settings.long_poll_max_s)
        if wait_final(
            session, transaction_id, shown.status, user_id=principal.id, seconds=seconds, settings=settings
        ):
            shown = transaction_views.shown(session, principal, transaction_id)  # as it is now
        # The polled path skips the schema's dump (a tenth of its CPU): the events' renderer
        # gives the same JSON, which tests/api/transactions/test_one_rendering.py holds it to.
        return jsonify(render.transaction(shown, shown.reversed_by))


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


HOLD_409 = (
    "`conflict`: the hold is not `held` (pending, failed, captured, voided, expired), already "
    "has a capture, has passed its `expires_at`, is not a hold, or is being processed right now"
)


@blp.route("/hold")
class Hold(MethodView):
    @blp.login_required()
    @blp.arguments(HoldSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(400, 404, 413, 422, 503, codes={422: TRANSACTION_422})
    @blp.idempotent
    def post(self, data, idempotency_key):
        """Reserve money now, move it later (a two-phase transfer, like a card authorisation).

        Same roles, request-time checks and `Idempotency-Key` as a transfer. 202 with a
        `pending` hold; the worker decides it exactly like a transfer (account status,
        currency, outgoing limits, funds counting what is already held) and it becomes
        `held` or `failed`. A `held` amount lowers the source's `available_balance` and
        every later funds check (transfers, debits, batch lines, other holds); `balance` is
        unchanged and no ledger entry exists until a capture. `held_amount` is what it
        still reserves, `captured_amount` what its capture moved. Still `held` at
        `expires_at` (`expires_in_seconds` after the request, 1 s to 30 days, default 7
        days, by the database's clock), it becomes `expired` and is released. A held
        amount counts toward the daily and per-minute outgoing limits as if sent, until
        it is voided or expires."""
        return _accept(_movement("hold", data), idempotency_key)


@blp.route("/<uuid:transaction_id>/capture")
class CaptureHold(MethodView):
    @blp.login_required()
    @blp.arguments(CaptureSchema)
    @blp.response(202, TransactionSchema)
    @blp.documents_errors(
        400,
        403,
        404,
        409,
        413,
        422,
        503,
        codes={
            403: "`forbidden`: a party to the hold that did not create it (only its creator, finance, admin)",
            409: HOLD_409,
            422: "`validation_error` (`amount` format, or more than the hold reserves), "
            "`account_inactive` (an account of the hold is frozen or closed), `idempotency_key_reused`",
        },
    )
    @blp.idempotent
    def post(self, data, transaction_id, idempotency_key):
        """Capture a `held` hold: 202 with a new `pending` transaction, type `capture`.

        It moves `amount` (default: all the hold reserves; more is 422 `validation_error`)
        from the hold's source to its target through the posting engine (two ledger
        entries). When it completes, the hold becomes `captured`, `captured_amount` is the
        amount and the remainder is released at once. One capture per hold: a second one
        is 409, as is capturing a hold that is not `held` or has passed `expires_at`. Once
        a capture is recorded it wins over a void and over expiry. Outgoing limits are not
        checked again (the hold was); account status is: a frozen or closed account's hold
        cannot be captured (422 here, or the capture fails `account_inactive` if frozen
        meanwhile, and the hold stays `held`)."""
        uow = get_uow()
        result = holds_service.capture(
            uow.session,
            current_principal(),
            transaction_id,
            amount=data["amount"],
            idempotency_key=idempotency_key,
            settings=current_app.config["LEDGERQ_SETTINGS"],
            request_id=g.request_id,
        )
        return _enqueue_and_commit(result)


@blp.route("/<uuid:transaction_id>/void")
class VoidHold(MethodView):
    @blp.login_required()
    @blp.response(200, TransactionSchema)
    @blp.documents_errors(
        403,
        404,
        409,
        503,
        codes={
            403: "`forbidden`: a party to the hold that did not create it (only its creator, finance, admin)",
            409: HOLD_409,
        },
    )
    def post(self, transaction_id):
        """Void a `held` hold: 200 with the hold, now `voided`; its reservation is released at once.

        Not `held`, or a capture of it already recorded: 409. Allowed on a frozen account
        (releasing moves no money). Same roles as a capture."""
        uow = get_uow()
        principal = current_principal()
        hold = holds_service.void(uow.session, principal, transaction_id, request_id=g.request_id)
        body = transaction_views.view(uow.session, principal, hold)
        uow.commit()
        return body
