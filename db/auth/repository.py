from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db.models import User


def get(session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def by_login(session: Session, login: str) -> User | None:
    """Username or email, case-insensitively (both are unique case-insensitively)."""
    needle = login.lower()
    return session.scalars(
        select(User).where(or_(func.lower(User.username) == needle, func.lower(User.email) == needle))
    ).first()


def clashes(session: Session, username: str, email: str) -> list[str]:
    """Which of username/email already exist (for a precise 409)."""
    rows = session.execute(
        select(func.lower(User.username), func.lower(User.email)).where(
            or_(func.lower(User.username) == username.lower(), func.lower(User.email) == email.lower())
        )
    ).all()
    fields = set()
    for existing_username, existing_email in rows:
        if existing_username == username.lower():
            fields.add("username")
        if existing_email == email.lower():
            fields.add("email")
    return sorted(fields)


def list_page(
    session: Session, *, role: str | None, is_active: bool | None, after: uuid.UUID | None, limit: int
) -> list[User]:
    """Keyset page ordered by id; fetches limit+1 so the caller can tell if more exist."""
    query = select(User).order_by(User.id).limit(limit + 1)
    if role is not None:
        query = query.where(User.role == role)
    if is_active is not None:
        query = query.where(User.is_active.is_(is_active))
    if after is not None:
        query = query.where(User.id > after)
    return list(session.scalars(query))


def email_taken(session: Session, email: str, except_id: uuid.UUID) -> bool:
    return (
        session.scalars(
            select(User.id).where(func.lower(User.email) == email.lower(), User.id != except_id)
        ).first()
        is not None
    )
