"""Recording a new transaction: its row, its audit row and its `transaction.created`
event, written by ONE statement (data-modifying CTEs), so that

- it is one round trip instead of three (plus the ORM flush between them), and
- it is atomic on its own: the API's accept path runs it outside an explicit
  transaction (no BEGIN and COMMIT round trips; api/transactions/routes.py).

If the (created_by, idempotency_key) pair is taken the INSERT inserts nothing, so the
audit and event INSERTs, which select from its RETURNING, insert nothing either. A
concurrent request with the same key blocks on the unique index until the first
commits, then sees the conflict: exactly one row per key, whatever the timing.

The event carries the row as `db.events.render.transaction` renders it. Everything but
the timestamps the database sets (created_at, updated_at, and a hold's expires_at) is
known before the statement runs, so the data is rendered here and those fields are
rendered by the statement itself (`render.iso_sql`, the same text as `render._iso`).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ClauseElement, Table, func, inspect, literal, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.orm import Session, make_transient_to_detached

from db.events import outbox, render
from db.models import AuditLog, Event, Transaction

_TABLE: Table = Transaction.__table__  # type: ignore[assignment]
# ORM attribute -> column name (`metadata_` is the `metadata` column).
_COLUMNS = {prop.key: prop.columns[0].name for prop in inspect(Transaction).column_attrs}
_SET_BY_THE_DATABASE = ("created_at", "updated_at")


def record_new(
    session: Session,
    values: dict[str, Any],
    *,
    audit_action: str,
    audit_data: dict[str, Any],
    request_id: str | None,
) -> Transaction | None:
    """Insert the transaction of `values` (ORM attribute names; a value may be a SQL
    expression, such as a hold's `expires_at`), its audit row and its created event;
    return it as stored (a persistent object of `session`), or None if its
    Idempotency-Key is taken (then nothing is written)."""
    new_row = (
        insert(_TABLE)
        .values({_COLUMNS[key]: value for key, value in values.items()})
        .on_conflict_do_nothing(constraint="uq_transactions_created_by_idempotency_key")
        .returning(*_TABLE.c)
        .cte("new_transaction")
    )
    audit_row = (
        insert(AuditLog)
        .from_select(
            ["action", "entity_type", "entity_id", "actor_id", "data", "request_id"],
            select(
                literal(audit_action),
                literal("transaction"),
                literal(str(values["id"])),
                literal(values["created_by"], UUID(as_uuid=True)),
                literal(audit_data, JSONB),
                literal(request_id),
            ).select_from(new_row),
        )
        .cte("new_audit_row")
    )
    statement = select(new_row).add_cte(audit_row).add_cte(_created_event(new_row, values))
    row = session.connection().execute(statement).one_or_none()
    if row is None:
        return None
    tx = Transaction(**{key: row._mapping[name] for key, name in _COLUMNS.items()})
    make_transient_to_detached(tx)  # as if loaded: the row exists, and this is it
    session.add(tx)
    return tx


def _created_event(new_row: Any, values: dict[str, Any]) -> Any:
    """The INSERT of the `transaction.created` event, selecting from the new row."""
    computed = [key for key, value in values.items() if isinstance(value, ClauseElement)]
    known = {key: value for key, value in values.items() if key not in computed}
    preview = Transaction(**{"attempts": 0, "metadata_": {}, **known})  # server defaults, as stored
    (event,) = outbox.transaction_events_of_new([preview])
    by_the_database = [*_SET_BY_THE_DATABASE, *computed]
    data = literal(event.data, JSONB).op("||")(
        _jsonb_object({name: render.iso_sql(new_row.c[_COLUMNS[name]]) for name in by_the_database})
    )
    return (
        insert(Event)
        .from_select(
            ["id", "type", "data", "account_ids"],
            select(
                literal(uuid.uuid4(), UUID(as_uuid=True)),
                literal(event.type),
                data,
                literal(list(event.account_ids), ARRAY(UUID(as_uuid=True))),
            ).select_from(new_row),
        )
        .cte("new_event")
    )


def _jsonb_object(fields: dict[str, Any]) -> Any:
    arguments: list[Any] = []
    for name, expression in fields.items():
        # The keys are our own column names: constants, never input.
        arguments += [literal_column(f"'{name}'"), expression]
    return func.jsonb_build_object(*arguments, type_=JSONB)
