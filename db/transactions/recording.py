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

The statement is built once per shape (which columns a request sets) and executed with
parameters: building a 36-column CTE per request cost more CPU than running it.
"""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Interval, Table, bindparam, func, inspect, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.core.sql import DriverQuery
from db.events import outbox, render
from db.models import AuditLog, Event, Transaction

_TABLE: Table = Transaction.__table__  # type: ignore[assignment]
# ORM attribute -> column name (`metadata_` is the `metadata` column).
_COLUMNS = {prop.key: prop.columns[0].name for prop in inspect(Transaction).column_attrs}
_SET_BY_THE_DATABASE = ("created_at", "updated_at")
_UNSET = dict.fromkeys(_COLUMNS)
# Parameter names of the audit row and the event (no transaction column is named so).
_AUDIT = ("audit_action", "audit_entity_id", "audit_data", "audit_request_id")
_EVENT = ("event_id", "event_data", "event_account_ids")


def record_new(
    session: Session,
    values: dict[str, Any],
    *,
    audit_action: str,
    audit_data: dict[str, Any],
    request_id: str | None,
) -> Any | None:
    """Insert the transaction of `values` (ORM attribute names), its audit row and its
    created event; return it as stored (a plain object with every attribute of a
    `Transaction`, not an ORM instance), or None if its Idempotency-Key is taken (then
    nothing is written).

    A `timedelta` value of a timestamp column means that long after the database's
    `now()` (a hold's `expires_at`: the clock the expiry tick reads)."""
    later = tuple(sorted(key for key, value in values.items() if isinstance(value, timedelta)))
    known = {key: value for key, value in values.items() if key not in later}
    # The row as it will be stored (server defaults included), as a plain object: an ORM
    # instance only to render it cost 4 % of an accepted transfer's CPU.
    preview = SimpleNamespace(**{**_UNSET, "attempts": 0, "metadata_": {}, **known})
    (event,) = outbox.transaction_events_of_new([preview])
    parameters = {
        **values,
        "audit_action": audit_action,
        "audit_entity_id": str(values["id"]),
        "audit_data": audit_data,
        "audit_request_id": audit.request_id_or_current(request_id),
        "event_id": uuid.uuid4(),
        "event_data": event.data,
        "event_account_ids": list(event.account_ids),
    }
    row = _statement(tuple(sorted(known)), later).one_or_none(session, parameters)
    if row is None:
        return None
    # The row as stored, under the model's attribute names, as a plain object: what the
    # callers do with it is read it (the 202's body, the replay check, a message's id).
    # An ORM instance made persistent in the session cost 6-8 % of an accepted
    # transfer's CPU (py-spy: the constructor, Session.add, make_transient_to_detached).
    return SimpleNamespace(**{key: getattr(row, name) for key, name in _COLUMNS.items()})


@functools.cache
def _statement(keys: tuple[str, ...], later: tuple[str, ...]) -> DriverQuery:
    """WITH new_transaction AS (INSERT ... ON CONFLICT DO NOTHING RETURNING *),
    new_audit_row AS (INSERT ... SELECT ... FROM new_transaction),
    new_event AS (INSERT ... SELECT ... FROM new_transaction) SELECT * FROM new_transaction."""
    columns: dict[str, Any] = {
        _COLUMNS[key]: bindparam(key, type_=_TABLE.c[_COLUMNS[key]].type) for key in keys
    }
    columns |= {_COLUMNS[key]: func.now() + bindparam(key, type_=Interval) for key in later}
    new_row = (
        insert(_TABLE)
        .values(columns)
        .on_conflict_do_nothing(constraint="uq_transactions_created_by_idempotency_key")
        .returning(*_TABLE.c)
        .cte("new_transaction")
    )
    action, entity_id, audit_data, request_id = _AUDIT
    audit_row = insert(AuditLog).from_select(
        ["action", "entity_type", "entity_id", "actor_id", "data", "request_id"],
        select(
            bindparam(action, type_=AuditLog.action.type),
            literal_column("'transaction'"),
            bindparam(entity_id, type_=AuditLog.entity_id.type),
            new_row.c.created_by,
            bindparam(audit_data, type_=JSONB),
            bindparam(request_id, type_=AuditLog.request_id.type),
        ).select_from(new_row),
    )
    event_id, event_data, account_ids = _EVENT
    by_the_database = {
        name: render.iso_sql(new_row.c[_COLUMNS[name]]) for name in (*_SET_BY_THE_DATABASE, *later)
    }
    data = bindparam(event_data, type_=JSONB).op("||")(_jsonb_object(by_the_database))
    event_row = insert(Event).from_select(
        ["id", "type", "data", "account_ids"],
        select(
            bindparam(event_id, type_=UUID(as_uuid=True)),
            literal_column("'transaction.created'"),
            data,
            bindparam(account_ids, type_=ARRAY(UUID(as_uuid=True))),
        ).select_from(new_row),
    )
    # Off SQLAlchemy's execute path (its result set-up alone is a column object per
    # returned column per call): DriverQuery.
    return DriverQuery(
        select(new_row).add_cte(audit_row.cte("new_audit_row")).add_cte(event_row.cte("new_event"))
    )


def _jsonb_object(fields: dict[str, Any]) -> Any:
    arguments: list[Any] = []
    for name, expression in fields.items():
        # The keys are our own column names: constants, never input.
        arguments += [literal_column(f"'{name}'"), expression]
    return func.jsonb_build_object(*arguments, type_=JSONB)
