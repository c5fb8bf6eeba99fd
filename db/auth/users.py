"""Users: passwords (hashing, the length rule, checking a login in constant time) and
reading and changing users: who may see whom, who may change what.

Policy (documented in deployment/AUTH.md and the OpenAPI spec):
- admins see and change everyone; anyone else sees and changes only themselves, and
  gets 404 for other users (no enumeration);
- `role` and `is_active` are admin-only: a non-admin who sends them (or `id`, which is
  read-only for everybody) gets 403 — mass assignment is refused loudly, not ignored;
- changing your own password needs `current_password`; a password change or a
  deactivation revokes every token of that user at once;
- an admin cannot demote or deactivate themselves (nobody could undo a lock-out);
- deactivation cancels the user's scheduled and pending transfers and pauses their
  standing orders, audited (one being applied at that moment completes).
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from db.audit import repository as audit
from db.auth import repository as users_repo
from db.auth import tokens
from db.auth.passwords import password_problem
from db.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from db.core.principal import Principal
from db.models import ROLES, User
from db.schedules.service import pause_all_created_by
from db.transactions.service import cancel_all_created_by

UNAVAILABLE = "This username or email is not available; choose another or log in."
# A real hash to compare against when the user does not exist, so that a wrong username
# costs as much time as a wrong password (no timing hint which part was wrong).
_DUMMY_HASH = generate_password_hash("ledgerq-timing-equaliser", method="scrypt")


def hash_password(password: str) -> str:
    # scrypt: memory-hard, in the standard library via werkzeug; no extra dependency.
    return generate_password_hash(password, method="scrypt")


def validate_password(password: str, *, username: str = "", email: str = "") -> None:
    problem = password_problem(password, username=username, email=email)
    if problem:
        raise ValidationFailed.field("password", problem)


def create_user(
    session: Session,
    *,
    username: str,
    email: str,
    password: str,
    role: str = "customer",
    name_the_clash: bool = True,
) -> User:
    """`name_the_clash=False` (self-registration): a taken username or email gets one
    answer naming neither, so the endpoint is no directory of who is registered."""
    if role not in ROLES:
        raise ValidationFailed.field("role", f"must be one of {', '.join(ROLES)}")
    validate_password(password, username=username, email=email)
    taken = users_repo.clashes(session, username, email)
    if taken and not name_the_clash:
        raise Conflict(UNAVAILABLE)
    if taken:
        raise Conflict(
            f"{' and '.join(taken)} already registered", {field: ["already registered"] for field in taken}
        )
    user = User(username=username, email=email, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    audit.record(
        session,
        action="user.created",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        data={"role": role},
    )
    return user


def login_account(session: Session, login: str) -> str:
    """What a login's failures count against: the user the name or email resolves to,
    else the normalised name (so unknown names are limited, and look, the same)."""
    user = users_repo.by_login(session, login)
    return f"user:{user.id}" if user else f"name:{login.strip().lower()[:254]}"


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The user if the credentials are right and the user active, else None.

    Always runs one password check, so timing does not tell a missing user from a
    wrong password.
    """
    user = users_repo.by_login(session, login)
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    ok = bool(user and valid and user.is_active)
    # The reason is for the audit trail only; the client always gets the same 401.
    reason = "unknown_user" if user is None else "bad_password" if not valid else "inactive"
    audit.record(
        session,
        action="auth.login_succeeded" if ok else "auth.login_failed",
        entity_type="user",
        entity_id=str(user.id) if user else "unknown",
        actor_id=user.id if ok and user else None,
        data={} if ok else {"login": login[:64], "reason": reason},
    )
    return user if ok else None


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


ADMIN_ONLY_FIELDS = ("id", "role", "is_active")


class CurrentPasswordIncorrect(ValidationFailed):
    """Raised after the failed attempt was audited: the caller commits, then answers."""


def visible_user(session: Session, principal: Principal, user_id: uuid.UUID) -> User:
    user = users_repo.get(session, user_id)
    if user is None or not (principal.is_admin or user.id == principal.id):
        raise NotFound("user not found")
    return user


def update_user(session: Session, principal: Principal, user_id: uuid.UUID, changes: dict[str, Any]) -> User:
    user = visible_user(session, principal, user_id)
    is_self = user.id == principal.id
    _check_allowed(principal, user, is_self, changes)
    # Verified before anything changes, so the audit row of a wrong guess can be
    # committed on its own.
    if "password" in changes and is_self:
        _verify_current_password(session, user, changes.get("current_password"))

    if "email" in changes and changes["email"].lower() != user.email.lower():
        if users_repo.email_taken(session, changes["email"], except_id=user.id):
            raise Conflict("email already registered", {"email": ["already registered"]})
        user.email = changes["email"]
        _audit(session, principal, user, "user.email_changed")
    if "password" in changes:
        validate_password(changes["password"], username=user.username, email=user.email)
        user.password_hash = hash_password(changes["password"])
        tokens.revoke_all(session, user, "password_changed")
        _audit(session, principal, user, "user.password_changed", by_admin=not is_self)
    if "role" in changes and changes["role"] != user.role:
        _audit(session, principal, user, "user.role_changed", **{"from": user.role, "to": changes["role"]})
        user.role = changes["role"]
    if "is_active" in changes and changes["is_active"] != user.is_active:
        _set_active(session, principal, user, changes["is_active"])
    session.flush()
    return user


def deactivate(session: Session, principal: Principal, user_id: uuid.UUID) -> User:
    """DELETE /users/{id}: the user stays (ledger history references it), inactive."""
    user = visible_user(session, principal, user_id)
    if user.id == principal.id:
        raise Conflict("You cannot deactivate yourself; ask another admin.")
    if user.is_active:
        _set_active(session, principal, user, False)
    session.flush()
    return user


def _check_allowed(principal: Principal, user: User, is_self: bool, changes: dict[str, Any]) -> None:
    if not principal.is_admin:
        refused = [field for field in ADMIN_ONLY_FIELDS if field in changes]
        if refused:
            raise Forbidden(
                "Only an admin may change role or is_active, and id is read-only.", {"fields": refused}
            )
    if "id" in changes and changes["id"] != user.id:
        raise ValidationFailed.field("id", "is read-only")
    if is_self and (changes.get("role", user.role) != user.role or changes.get("is_active") is False):
        raise Conflict("You cannot change your own role or deactivate yourself; ask another admin.")


def _verify_current_password(session: Session, user: User, current: str | None) -> None:
    if not current:
        raise ValidationFailed.field("current_password", "is required to change your own password")
    if not check_password_hash(user.password_hash, current):
        audit.record(
            session,
            action="user.password_change_failed",
            entity_type="user",
            entity_id=user.id,
            actor_id=user.id,
            data={"reason": "current_password_incorrect"},
        )
        raise CurrentPasswordIncorrect(
            "The request has invalid fields.", {"current_password": ["is incorrect"]}
        )


def _set_active(session: Session, principal: Principal, user: User, active: bool) -> None:
    user.is_active = active
    if not active:
        tokens.revoke_all(session, user, "deactivated")
        _stop_standing_instructions(session, principal, user)
    _audit(session, principal, user, "user.activated" if active else "user.deactivated")


def _stop_standing_instructions(session: Session, principal: Principal, user: User) -> None:
    """A deactivated user's money stops moving: their scheduled and pending transfers are
    cancelled and their standing orders paused, each audited. Reactivating does not
    undo it (nothing surprising starts again); the user re-sends, finance resumes."""
    cancel_all_created_by(session, principal, user.id, reason="user_deactivated")
    pause_all_created_by(session, principal, user.id, reason="user_deactivated")


def _audit(session: Session, principal: Principal, user: User, action: str, **data: Any) -> None:
    audit.record(
        session, action=action, entity_type="user", entity_id=user.id, actor_id=principal.id, data=data
    )
