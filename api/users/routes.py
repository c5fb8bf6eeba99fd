"""Users: admins manage everyone; anyone else reads and edits only themselves."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from api.auth.schemas import UserSchema
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.users.schemas import UserListArgsSchema, UserPageSchema, UserUpdateSchema
from db.auth import repository as users_repo
from db.auth import users as users_service

blp = Blueprint("users", __name__, url_prefix="/users", description="User management")


@blp.route("")
class Users(MethodView):
    @blp.login_required("admin")
    @blp.arguments(UserListArgsSchema, location="query")
    @blp.keyset_page(lambda user: user.id, cursor=uuid.UUID)
    @blp.response(200, UserPageSchema)
    @blp.documents_errors(422)
    def get(self, args, page):
        """Every user (admin), optionally by `role` / `is_active`."""
        rows = users_repo.list_page(
            get_session(), role=args["role"], is_active=args["is_active"], after=page.after, limit=page.limit
        )
        return page.of(rows)


@blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @blp.login_required()
    @blp.response(200, UserSchema)
    @blp.documents_errors(404)
    def get(self, user_id):
        """One user: admins see anyone, others only themselves (404 otherwise)."""
        return users_service.visible_user(get_session(), current_principal(), user_id)

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
            user = users_service.update_user(uow.session, current_principal(), user_id, changes)
        except users_service.CurrentPasswordIncorrect:
            uow.commit()  # keep the audit row of the failed attempt (nothing else changed)
            raise
        uow.commit()
        return user

    @blp.login_required("admin")
    @blp.response(204)
    @blp.documents_errors(404, 409)
    def delete(self, user_id):
        """Deactivate (never delete: the ledger references users). Their tokens stop working,
        their scheduled and pending transfers are cancelled and their standing orders
        paused, each audited with `reason: user_deactivated`."""
        uow = get_uow()
        users_service.deactivate(uow.session, current_principal(), user_id)
        uow.commit()
