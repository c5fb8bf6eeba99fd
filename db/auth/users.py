from __future__ import annotations

import hmac

from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from db.audit import repository as audit
from db.auth import repository as users_repo
from db.auth.passwords import password_problem
from db.core.errors import Conflict, ValidationFailed
from db.models import ROLES, User

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
