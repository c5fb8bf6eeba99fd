"""The append-only audit log: `record` appends a row in the caller's transaction (it
commits or vanishes with it); `list_logs` reads the log back, newest first."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditLog


def record(
    session: Session,
    *,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | str,
    actor_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    """Append one audit row in the caller's transaction (it commits or vanishes with it)."""
    request_id = request_id_or_current(request_id)
    session.add(
        AuditLog(
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            actor_id=actor_id,
            data=data or {},
            request_id=request_id,
        )
    )


def request_id_or_current(request_id: str | None) -> str | None:
    """The request id an audit row carries: the one given, else the current request's."""
    if request_id is None:
        from structlog.contextvars import get_contextvars

        request_id = get_contextvars().get("request_id")
    return request_id


def list_logs(
    session: Session,
    *,
    entity_type: str | None,
    entity_id: str | None,
    before_id: int | None,
    limit: int,
) -> list[AuditLog]:
    """Newest first, keyset-paginated on the id (limit+1 rows); optional entity filters."""
    query = select(AuditLog)
    if entity_type is not None:
        query = query.where(AuditLog.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(AuditLog.entity_id == entity_id)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return list(session.scalars(query.order_by(AuditLog.id.desc()).limit(limit + 1)))
