"""Users: admins manage everyone; anyone else reads and edits only themselves."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from api.auth.schemas import UserSchema
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.extensions.paging import capped_limit
from api.users.schemas import UserListArgsSchema, UserPageSchema, UserUpdateSchema
from db.auth import repository as users_repo
from db.auth import user_admin
from db.pagination import decode_cursor, page

blp = Blueprint("users", __name__, url_prefix="/users", description="User management")


@blp.route("")
class Users(MethodView):
    @blp.login_required("admin")
    @blp.arguments(UserListArgsSchema, location="query")
    @blp.response(200, UserPageSchema)
    @blp.documents_errors(422)
    def get(self, args):
        """Every user (admin), optionally by `role` / `is_active`.

        Cursor-paginated (`limit`, `cursor`; follow `next_cursor` until null). Deactivated
        users are included unless `is_active=true` is given."""
        limit = capped_limit(args["limit"])
        rows = users_repo.list_page(
            get_session(),
            role=args["role"],
            is_active=args["is_active"],
            after=decode_cursor(args["cursor"], uuid.UUID),
            limit=limit,
        )
        rows, next_cursor = page(rows, limit, lambda user: user.id)
        return {"items": rows, "next_cursor": next_cursor}


@blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @blp.login_required()
    @blp.response(200, UserSchema)
    @blp.documents_errors(404)
    def get(self, user_id):
        """One user: admins see anyone, others only themselves.

        Another user's id is 404 for a non-admin, exactly like an id that does not exist, so
        user ids cannot be enumerated."""
        return user_admin.visible_user(get_session(), current_principal(), user_id)

    @blp.login_required()
    @blp.rate_limit("account")
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.documents_errors(400, 404, 409, 422)
    def put(self, changes, user_id):
        """Change email or password (self or admin); role and is_active (admin only: 403 otherwise).

        Changing your own password needs `current_password`. A password change or a
        deactivation revokes every access and refresh token of that user at once."""
        uow = get_uow()
        try:
            user = user_admin.update_user(uow.session, current_principal(), user_id, changes)
        except user_admin.CurrentPasswordIncorrect:
            uow.commit()  # keep the audit row of the failed attempt (nothing else changed)
            raise
        uow.commit()
        return user

    @blp.login_required("admin")
    @blp.response(204)
    @blp.documents_errors(404, 409)
    def delete(self, user_id):
        """Deactivate a user (admin).

        Never deleted: the ledger and the audit log reference users. Every access and refresh
        token of the user stops working at once; their accounts and history stay. 409 for
        yourself: ask another admin."""
        uow = get_uow()
        user_admin.deactivate(uow.session, current_principal(), user_id)
        uow.commit()
