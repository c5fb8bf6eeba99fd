from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from api.auth.schemas import LoginSchema, RegisterSchema, TokenSchema, UserSchema
from api.extensions import Blueprint
from api.extensions.auth import current_principal, issue_access_token
from api.extensions.database import get_session, get_uow
from db.errors import Unauthorized
from db.repositories import users as users_repo
from db.services import tokens, users

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Registration, login and the current user")


@blp.route("/register")
class Register(MethodView):
    @blp.arguments(RegisterSchema)
    @blp.response(201, UserSchema)
    @blp.documents_errors(400, 409, 422)
    def post(self, data):
        """Register a customer (register never creates finance or admin users)."""
        uow = get_uow()
        user = users.create_user(uow.session, role="customer", **data)
        uow.commit()
        return user


@blp.route("/login")
class Login(MethodView):
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.documents_errors(400, 401, 422)
    def post(self, data):
        """Exchange credentials for an access token and a refresh token."""
        settings = current_app.config["LEDGERQ_SETTINGS"]
        uow = get_uow()
        user = users.authenticate(uow.session, data.get("username") or data.get("email"), data["password"])
        if user is None:
            uow.commit()  # keep the audit row of the failed attempt
            raise Unauthorized("Invalid credentials.")
        access, expires_in = issue_access_token(settings, user.id, user.role)
        refresh = tokens.issue_refresh_token(uow.session, user.id, settings.refresh_token_ttl_s)
        uow.commit()
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }


@blp.route("/me")
class Me(MethodView):
    @blp.login_required()
    @blp.response(200, UserSchema)
    def get(self):
        """The authenticated user."""
        return users_repo.get(get_session(), current_principal().id)
