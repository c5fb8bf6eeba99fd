from __future__ import annotations

import uuid
from typing import Any

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
    if request_id is None:
        from structlog.contextvars import get_contextvars

        request_id = get_contextvars().get("request_id")
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
