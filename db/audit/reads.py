"""Reading the audit log (writing is `db.audit.repository.record`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditLog


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
