"""The audit log for ops (admin): who did what, newest first."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.extensions import Blueprint
from api.extensions.database import get_session
from api.extensions.schemas import PageArgsSchema, page_schema
from db.audit import repository as audit_logs_repo

blp = Blueprint("audit_logs", __name__, url_prefix="/admin/audit-logs", description="Audit log (admin)")


class AuditLogArgsSchema(PageArgsSchema):
    entity_type = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=32),
        metadata={"description": "account, transaction, user, batch, schedule, ..."},
    )
    entity_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))


class AuditLogSchema(Schema):
    id = fields.Integer()
    actor_id = fields.UUID(allow_none=True)
    action = fields.String()
    entity_type = fields.String()
    entity_id = fields.String()
    data = fields.Dict()
    request_id = fields.String(allow_none=True)
    created_at = fields.Function(lambda log: log.created_at.isoformat(), metadata={"type": "string"})


AuditLogPageSchema = page_schema(AuditLogSchema, "AuditLogPage")


@blp.route("")
class AuditLogs(MethodView):
    @blp.login_required("admin")
    @blp.arguments(AuditLogArgsSchema, location="query")
    @blp.keyset_page(lambda log: log.id)
    @blp.response(200, AuditLogPageSchema)
    @blp.documents_errors(422)
    @blp.reads_from_replica()
    def get(self, args, page):
        """The audit log, newest first (admin).

        Optionally for one `entity_type` and/or `entity_id`: who did what to which account,
        user, transaction or schedule, and when. Cursor-paginated."""
        rows = audit_logs_repo.list_logs(
            get_session(),
            entity_type=args["entity_type"],
            entity_id=args["entity_id"],
            before_id=page.after,
            limit=page.limit,
        )
        return page.of(rows)
