"""Users: admins manage everyone; anyone else reads and edits only themselves."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView

from api.auth.schemas import UserSchema
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.users.schemas import RateLimitOverrideSchema, UserListArgsSchema, UserPageSchema, UserUpdateSchema
from db.auth import rate_limits
from db.auth import repository as users_repo
from db.auth import users as users_service
from db.core.errors import NotFound

blp = Blueprint("users", __name__, url_prefix="/users", description="User management")


@blp.route("")
class Users(MethodView):
    @blp.login_required("admin")
    @blp.arguments(UserListArgsSchema, location="query")
    @blp.keyset_page(lambda user: user.id, cursor=uuid.UUID)
    @blp.response(200, UserPageSchema)
    @blp.documents_errors(422)
    def get(self, args, page):
        """Every user (admin), optionally by `role` / `is_active`.

        Cursor-paginated (`limit`, `cursor`; follow `next_cursor` until null). Deactivated
        users are included unless `is_active=true` is given."""
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
        """One user: admins see anyone, others only themselves.

        Another user's id is 404 for a non-admin, exactly like an id that does not exist, so
        user ids cannot be enumerated."""
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
        """Deactivate a user (admin).

        Never deleted: the ledger and the audit log reference users. Every access and refresh
        token of the user stops working at once; their accounts and history stay. Their
        scheduled and pending transfers are cancelled and their standing orders paused, each
        audited with `reason: user_deactivated`. 409 for yourself: ask another admin."""
        uow = get_uow()
        users_service.deactivate(uow.session, current_principal(), user_id)
        uow.commit()


@blp.route("/<uuid:user_id>/rate-limits")
class UserRateLimits(MethodView):
    """A per-user quota override (admin): e.g. a service user for an integration gets
    budgets of its own instead of the customer defaults. Audited
    (`user.rate_limit_overridden`, `user.rate_limit_override_cleared`); effective on the
    next request of every web process."""

    @blp.login_required("admin")
    @blp.response(200, RateLimitOverrideSchema)
    @blp.documents_errors(404)
    def get(self, user_id):
        """A user's rate-limit override (admin).

        The budgets this user has instead of the defaults (`requests`, `money`), with the
        reason and who set it; 404 while the configured defaults apply."""
        found = rate_limits.get(get_session(), user_id)
        if found is None:
            raise NotFound("no rate-limit override for this user")
        return found

    @blp.login_required("admin")
    @blp.arguments(RateLimitOverrideSchema)
    @blp.response(200, RateLimitOverrideSchema)
    @blp.documents_errors(404, 422)
    def put(self, data, user_id):
        """Set a user's rate-limit override (admin).

        The user's `requests` and/or `money` budget as limit strings such as
        `6000 per minute` or `100/second;5000/minute`; an unset one keeps the default.
        Audited (`user.rate_limit_overridden`); effective on the next request."""
        uow = get_uow()
        row = rate_limits.set_override(uow.session, actor_id=current_principal().id, user_id=user_id, **data)
        uow.commit()
        rate_limits.forget_mirror(current_app.config["LEDGERQ_SETTINGS"])
        return row

    @blp.login_required("admin")
    @blp.response(204)
    @blp.documents_errors(404)
    def delete(self, user_id):
        """Clear a user's rate-limit override (admin).

        The user is back on the configured defaults from the next request on. Audited
        (`user.rate_limit_override_cleared`); 404 when there was no override."""
        uow = get_uow()
        rate_limits.clear_override(uow.session, actor_id=current_principal().id, user_id=user_id)
        uow.commit()
        rate_limits.forget_mirror(current_app.config["LEDGERQ_SETTINGS"])
