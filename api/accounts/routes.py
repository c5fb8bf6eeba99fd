from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView

from api.accounts.schemas import (
    AccountCreateSchema,
    AccountListArgsSchema,
    AccountPageSchema,
    AccountSchema,
    EntryPageSchema,
    LimitsSchema,
    LimitsUpdateSchema,
    StatusChangeSchema,
)
from api.docs import LIMITS_409, LIMITS_422, STATUS_CHANGE_409
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.extensions.schemas import PageArgsSchema
from db.accounts import service as accounts
from db.ledger import repository as ledger_repo

blp = Blueprint("accounts", __name__, url_prefix="/accounts", description="Accounts and their ledger entries")


@blp.route("")
class Accounts(MethodView):
    @blp.login_required()
    @blp.arguments(AccountCreateSchema)
    @blp.response(201, AccountSchema)
    @blp.documents_errors(400, 422)
    def post(self, data):
        """Open an account (balance 0; money only enters through a credit).

        One currency per account (ISO 4217; an unknown or withdrawn code is 422). Customers
        open accounts for themselves; finance/admin may open one for another user with
        `owner_id`. Audited."""
        uow = get_uow()
        account = accounts.open_account(uow.session, current_principal(), **data)
        view = accounts.view(uow.session, account)
        uow.commit()
        return view

    @blp.login_required()
    @blp.arguments(AccountListArgsSchema, location="query")
    @blp.keyset_page(lambda row: row[0].id, cursor=uuid.UUID)
    @blp.response(200, AccountPageSchema)
    @blp.documents_errors(422)
    def get(self, args, page):
        """List accounts: your own; finance/admin see all and may filter by owner.

        Cursor-paginated (`limit`, `cursor`; follow `next_cursor` until null). Each account
        carries `balance` and `available_balance` (balance minus pending outgoing and held amounts)."""
        return accounts.list_visible(
            get_session(),
            current_principal(),
            page,
            owner_id=args["owner_id"],
            currency=args["currency"],
            kind=args["kind"],
        )


@blp.route("/<uuid:account_id>")
class AccountById(MethodView):
    @blp.login_required()
    @blp.response(200, AccountSchema)
    @blp.documents_errors(404)
    def get(self, account_id):
        """One account, with its balance and available balance.

        Someone else's account is 404, exactly like one that does not exist (finance/admin see
        every account), so account ids cannot be enumerated."""
        return accounts.visible_view(get_session(), current_principal(), account_id)


@blp.route("/<uuid:account_id>/entries")
class AccountEntries(MethodView):
    @blp.login_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.keyset_page(lambda entry: entry.id)
    @blp.response(200, EntryPageSchema)
    @blp.documents_errors(404, 422)
    @blp.reads_from_replica()
    def get(self, args, account_id, page):
        """The account's immutable ledger entries, newest first.

        One signed entry per side of every applied transaction (negative leaves the account),
        each with `balance_after`. Cursor-paginated; entries are never updated or deleted.
        Each carries `hash` and `prev_hash`: the account's entries form a SHA-256 chain
        (oldest first), so anyone holding the entries can recompute every link, and
        `ledgerq verify` names the first broken one."""
        session = get_session()
        account = accounts.visible_account(session, current_principal(), account_id)
        rows = ledger_repo.entries_of(session, account.id, before_id=page.after, limit=page.limit)
        return page.of(rows)


def _change_status(action: str, account_id, data):
    uow = get_uow()
    account = accounts.change_status(uow.session, current_principal(), account_id, action, data.get("reason"))
    view = accounts.view(uow.session, account)
    uow.commit()
    return view


@blp.route("/<uuid:account_id>/freeze")
class FreezeAccount(MethodView):
    @blp.login_required("finance", "admin")
    @blp.arguments(StatusChangeSchema, required=False)
    @blp.response(200, AccountSchema)
    @blp.documents_errors(400, 404, 409, 422, codes={409: STATUS_CHANGE_409})
    def post(self, data, account_id):
        """Freeze an account: no money in or out (finance/admin).

        Pending transfers touching it fail `account_inactive` when applied; new ones are 422
        `account_inactive`. 409 unless the account is active. The optional `reason` goes to the
        audit log."""
        return _change_status("freeze", account_id, data)


@blp.route("/<uuid:account_id>/unfreeze")
class UnfreezeAccount(MethodView):
    @blp.login_required("finance", "admin")
    @blp.arguments(StatusChangeSchema, required=False)
    @blp.response(200, AccountSchema)
    @blp.documents_errors(400, 404, 409, 422, codes={409: STATUS_CHANGE_409})
    def post(self, data, account_id):
        """Unfreeze a frozen account (finance/admin).

        The account takes money in and out again. 409 unless it is frozen. The optional
        `reason` goes to the audit log."""
        return _change_status("unfreeze", account_id, data)


@blp.route("/<uuid:account_id>/close")
class CloseAccount(MethodView):
    @blp.login_required("finance", "admin")
    @blp.arguments(StatusChangeSchema, required=False)
    @blp.response(200, AccountSchema)
    @blp.documents_errors(400, 404, 409, 422, codes={409: STATUS_CHANGE_409})
    def post(self, data, account_id):
        """Close an account for good (finance/admin).

        Only from a zero balance (409 `conflict` otherwise, also for system accounts);
        irreversible: no new transactions, history stays readable. The optional `reason` goes
        to the audit log."""
        return _change_status("close", account_id, data)


@blp.route("/<uuid:account_id>/limits")
class AccountLimits(MethodView):
    @blp.login_required()
    @blp.response(200, LimitsSchema)
    @blp.documents_errors(404)
    def get(self, account_id):
        """The limits in force on money leaving this account (null = unlimited).

        Each limit is the account's override or the configured default (`overrides` names the
        overridden ones), plus `overdraft_limit`. The owner may read them; finance/admin set
        them."""
        session = get_session()
        account = accounts.visible_account(session, current_principal(), account_id)
        return accounts.view_limits(session, account, current_app.config["LEDGERQ_SETTINGS"])

    @blp.login_required("finance", "admin")
    @blp.arguments(LimitsUpdateSchema)
    @blp.response(200, LimitsSchema)
    @blp.documents_errors(400, 404, 409, 422, codes={409: LIMITS_409, 422: LIMITS_422})
    def put(self, data, account_id):
        """Replace the account's limit overrides (finance/admin).

        A field left out or null goes back to the configured default (overdraft to 0). 409 when
        the balance is already below a new overdraft floor, or for system and closed accounts.
        Audited."""
        return _set_limits(account_id, {field: data.get(field) for field in accounts.LIMIT_FIELDS})

    @blp.login_required("finance", "admin")
    @blp.arguments(LimitsUpdateSchema)
    @blp.response(200, LimitsSchema)
    @blp.documents_errors(400, 404, 409, 422, codes={409: LIMITS_409, 422: LIMITS_422})
    def patch(self, data, account_id):
        """Change only the limits given (finance/admin).

        Fields not in the body keep their value; null resets one to its configured default
        (overdraft to 0). Same 409 rules as `PUT`. Audited."""
        return _set_limits(account_id, data)


def _set_limits(account_id, changes: dict):
    uow = get_uow()
    view = accounts.set_limits(
        uow.session, current_principal(), account_id, changes, current_app.config["LEDGERQ_SETTINGS"]
    )
    uow.commit()
    return view
