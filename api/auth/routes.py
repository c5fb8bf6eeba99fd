from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from api.auth.schemas import LoginSchema, RefreshSchema, RegisterSchema, TokenSchema, UserSchema
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from db.auth import repository as users_repo
from db.auth import tokens, users
from db.core.errors import Unauthorized
from db.core.jwt_codec import INVALID_TOKEN

blp = Blueprint(
    "auth", __name__, url_prefix="/auth", description="Registration, login, tokens, the current user"
)


@blp.route("/register")
class Register(MethodView):
    @blp.rate_limit("auth")
    @blp.arguments(RegisterSchema)
    @blp.response(201, UserSchema)
    @blp.documents_errors(400, 409, 422)
    def post(self, data):
        """Register a customer (register never creates finance or admin users).

        Public and rate limited (policy `auth`). The password needs at least 12 characters;
        a username or email already taken is 409 `conflict`. Log in afterwards for tokens;
        finance and admin users are made by an admin (`ledgerq users create` or `PUT /users/{id}`)."""
        uow = get_uow()
        user = users.create_user(uow.session, role="customer", name_the_clash=False, **data)
        uow.commit()
        return user


@blp.route("/login")
class Login(MethodView):
    @blp.rate_limit("login")
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.documents_errors(400, 401, 422)
    def post(self, data):
        """Exchange credentials for an access token and a refresh token (a new token family).

        Wrong username, wrong password and inactive user are the same 401."""
        settings = current_app.config["LEDGERQ_SETTINGS"]
        uow = get_uow()
        login = data.get("username") or data.get("email")
        failures = current_app.extensions["ledgerq_login_failures"]
        account = users.login_account(uow.session, login)
        failures.refuse_if_exhausted(account)
        user = users.authenticate(uow.session, login, data["password"])
        if user is None:
            failures.record_failure(account)
            uow.commit()  # keep the audit row of the failed attempt
            raise Unauthorized("Invalid credentials.")
        pair = tokens.issue_pair(uow.session, settings, user)
        uow.commit()
        return pair


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.rate_limit("auth")
    @blp.arguments(RefreshSchema)
    @blp.response(200, TokenSchema)
    @blp.documents_errors(400, 401, 422)
    def post(self, data):
        """Spend a refresh token for a new pair (rotation).

        A refresh token works once. Presenting a spent one again revokes its whole family
        (every token descended from that login) and answers 401: log in again."""
        uow = get_uow()
        pair = tokens.rotate(uow.session, current_app.config["LEDGERQ_SETTINGS"], data["refresh_token"])
        uow.commit()  # also when rejected: a detected reuse must stay revoked
        if pair is None:
            raise Unauthorized(INVALID_TOKEN)
        return pair


@blp.route("/logout")
class Logout(MethodView):
    @blp.rate_limit("auth")
    @blp.arguments(RefreshSchema)
    @blp.response(204)
    @blp.documents_errors(400, 401, 422)
    def post(self, data):
        """Revoke the refresh token's family (log out).

        Every refresh token descended from that login stops working at once. Access tokens
        already issued expire on their own (minutes); change the password to cut them off at
        once. An unknown or already revoked token is 401."""
        uow = get_uow()
        tokens.logout(uow.session, current_app.config["LEDGERQ_SETTINGS"], data["refresh_token"])
        uow.commit()


@blp.route("/me")
class Me(MethodView):
    @blp.login_required()
    @blp.response(200, UserSchema)
    def get(self):
        """The authenticated user.

        The user the bearer token belongs to, with `role` (`customer`, `finance` or `admin`):
        what a client shows after login, and how it learns which operations it may call."""
        return users_repo.get(get_session(), current_principal().id)
