"""SQL building blocks shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, literal_column
from sqlalchemy.orm import Session


def constant(value: str) -> ColumnElement[str]:
    """`value` written into the SQL as a string constant, not sent as a bound parameter.

    For a predicate a partial index is defined on (`status = 'pending'` and the like):
    psycopg prepares a statement from its 5th execution on a connection, PostgreSQL then
    switches to a generic plan, and a generic plan cannot prove `status = $1` implies
    the index's `status = 'pending'`, so it falls back to a wider index or a table scan
    (EXPLAIN of GET /transactions/{id}: a Seq Scan of every transaction for its
    reversal; of a balance read: every transaction the account ever sent). Only for our
    own constants, never for input."""
    return literal_column("'" + value.replace("'", "''") + "'")


def still_pending(alias: str) -> str:
    """`<alias>.status = 'pending'` as the re-check of rows an UPDATE picks by primary key
    (`id = ANY (...)`), written so the planner cannot serve it from a partial index on
    `status = 'pending'`.

    The statistics of `transactions` are a burst behind its pending rows (autovacuum
    analyses after the fact), so the planner takes a 5,000-row backlog for 3 rows and
    reads every pending row through the partial index instead of the 100 keys: a
    worker's claim (an UPDATE joined to its CTE, then) took 120 ms behind a 5,000
    backlog, 14 ms with `id = ANY` and the plain predicate, 4 ms this way."""
    return f"({alias}.status = 'pending') IS TRUE"


def copy_rows(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY `rows` into `table` on the session's own connection, in its transaction: a
    block of thousands of rows is one round trip, and a rollback takes them back."""
    session.flush()
    dbapi = session.connection().connection.driver_connection
    assert dbapi is not None
    with dbapi.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
