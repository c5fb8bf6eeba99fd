"""SQL building blocks shared by the repositories."""

from __future__ import annotations

from sqlalchemy import ColumnElement, literal_column


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
