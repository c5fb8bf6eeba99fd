"""Per-user quota overrides (admin): a service user for an integration gets budgets of
its own instead of the customer defaults. Stored in `rate_limit_overrides`, audited;
the limiter (api/extensions/rate_limit.py) reads them from Redis, reloaded from here."""

from __future__ import annotations

import uuid

import redis
from limits import parse_many
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.auth import repository as users_repo
from db.core.config import Settings
from db.core.errors import NotFound, ValidationFailed
from db.core.logs import get_logger
from db.models import RateLimitOverride

log = get_logger(__name__)

# Budgets an override can replace: the per-user request budget and the money budget.
SCOPES = ("requests", "money")


def spec(limit: str) -> str:
    """A limit string as the limiter's compact form, "amount:seconds;amount:seconds"."""
    return ";".join(f"{item.amount}:{item.get_expiry()}" for item in parse_many(limit))


def checked(field: str, limit: str | None) -> str | None:
    if limit is None:
        return None
    try:
        items = parse_many(limit)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ValidationFailed.field(
            field, "must be a rate limit such as '6000 per minute' or '100/second;5000/minute'"
        )
    return limit


def get(session: Session, user_id: uuid.UUID) -> RateLimitOverride | None:
    return session.get(RateLimitOverride, user_id)


def set_override(
    session: Session,
    *,
    actor_id: uuid.UUID | None,
    user_id: uuid.UUID,
    requests: str | None,
    money: str | None,
    reason: str,
) -> RateLimitOverride:
    if users_repo.get(session, user_id) is None:
        raise NotFound("user not found")
    if requests is None and money is None:
        raise ValidationFailed.field("requests", "give requests and/or money (or delete the override)")
    row = get(session, user_id) or RateLimitOverride(user_id=user_id)
    before = {"requests": row.requests, "money": row.money} if row.reason else None
    row.requests, row.money = checked("requests", requests), checked("money", money)
    row.reason, row.updated_by = reason, actor_id
    session.add(row)
    session.flush()
    audit.record(
        session,
        action="user.rate_limit_overridden",
        entity_type="user",
        entity_id=user_id,
        actor_id=actor_id,
        data={"requests": requests, "money": money, "reason": reason, "before": before},
    )
    return row


def clear_override(session: Session, *, actor_id: uuid.UUID | None, user_id: uuid.UUID) -> None:
    row = get(session, user_id)
    if row is None:
        raise NotFound("no rate-limit override for this user")
    session.delete(row)
    session.flush()
    audit.record(
        session,
        action="user.rate_limit_override_cleared",
        entity_type="user",
        entity_id=user_id,
        actor_id=actor_id,
        data={"requests": row.requests, "money": row.money},
    )


def all_specs(session: Session) -> dict[str, str]:
    """Every override as the limiter's Redis hash: "<user id>:<scope>" -> spec."""
    found = {}
    for row in session.scalars(select(RateLimitOverride)):
        for scope in SCOPES:
            limit = getattr(row, scope)
            if limit:
                found[f"{row.user_id}:{scope}"] = spec(limit)
    return found


def mirror_keys(settings: Settings) -> tuple[str, str]:
    """The Redis hash of every override's spec and the marker saying it is loaded."""
    prefix = f"{settings.redis_namespace}:ratelimit:overrides"
    return prefix, f"{prefix}:loaded"


def forget_mirror(settings: Settings) -> None:
    """After a committed change: the next request of any process reloads the mirror. If
    Redis is unreachable now, the marker expires on its own (api/extensions/rate_limit.py)."""
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2).delete(
            mirror_keys(settings)[1]
        )
    except redis.RedisError as error:
        log.warning("rate_limit.mirror_not_invalidated", error=str(error)[:200])
