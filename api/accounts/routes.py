from __future__ import annotations

import uuid

from flask.views import MethodView

from api.accounts.schemas import (
    AccountCreateSchema,
    AccountListArgsSchema,
    AccountPageSchema,
    AccountSchema,
    EntryPageSchema,
)
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.extensions.paging import capped_limit
from api.extensions.schemas import PageArgsSchema
from db.repositories import accounts as accounts_repo
from db.repositories import ledger as ledger_repo
from db.repositories.pagination import decode_cursor, page
from db.services import accounts

blp = Blueprint("accounts", __name__, url_prefix="/accounts", description="Accounts and their ledger entries")


@blp.route("")
class Accounts(MethodView):
    @blp.login_required()
    @blp.arguments(AccountCreateSchema)
    @blp.response(201, AccountSchema)
    @blp.documents_errors(400, 422)
    def post(self, data):
        """Open an account (balance 0; money only enters through a credit)."""
        uow = get_uow()
        account = accounts.open_account(uow.session, current_principal(), **data)
        view = accounts.view(uow.session, account)
        uow.commit()
        return view

    @blp.login_required()
    @blp.arguments(AccountListArgsSchema, location="query")
    @blp.response(200, AccountPageSchema)
    @blp.documents_errors(422)
    def get(self, args):
        """Own accounts; finance/admin see all and may filter by owner."""
        principal = current_principal()
        owner = args["owner_id"] if principal.sees_everything else principal.id
        limit = capped_limit(args["limit"])
        session = get_session()
        rows = accounts_repo.list_visible(
            session,
            owner_id=owner,
            currency=args["currency"],
            kind=args["kind"] if principal.sees_everything else "user",
            after=decode_cursor(args["cursor"], uuid.UUID),
            limit=limit,
        )
        rows, next_cursor = page(rows, limit, lambda row: row[0].id)
        return {"items": accounts.views(session, rows), "next_cursor": next_cursor}


@blp.route("/<uuid:account_id>")
class AccountById(MethodView):
    @blp.login_required()
    @blp.response(200, AccountSchema)
    @blp.documents_errors(404)
    def get(self, account_id):
        """One account (404 when it is someone else's)."""
        session = get_session()
        return accounts.view(session, accounts.visible_account(session, current_principal(), account_id))


@blp.route("/<uuid:account_id>/entries")
class AccountEntries(MethodView):
    @blp.login_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, EntryPageSchema)
    @blp.documents_errors(404, 422)
    def get(self, args, account_id):
        """The account's immutable ledger entries, newest first."""
        session = get_session()
        account = accounts.visible_account(session, current_principal(), account_id)
        limit = capped_limit(args["limit"])
        rows = ledger_repo.entries_of(
            session, account.id, before_id=decode_cursor(args["cursor"], int), limit=limit
        )
        rows, next_cursor = page(rows, limit, lambda entry: entry.id)
        return {"items": rows, "next_cursor": next_cursor}
