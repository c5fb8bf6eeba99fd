"""SQL building blocks shared by the repositories."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Float, Numeric, Select, any_, bindparam, literal_column
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
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


def in_ids(column: Any) -> Any:
    """`column = ANY(:ids)`, `ids` a list of UUIDs: one bound array, so a statement built
    once serves any number of ids (building an IN clause per call cost a sixth of the
    accounts lookup), and a DriverQuery can run it (it refuses expanding IN lists)."""
    return column == any_(bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True))))


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


_DIALECT = PGDialect_psycopg()


class DriverQuery:
    """A Core statement compiled once to psycopg's SQL and run on the session's own
    psycopg connection (in its transaction, if any), answering named tuples: for the
    small statements of the request paths clients hammer (GET /transactions/{id}, a
    balance read, a transfer's two accounts and its one-statement write). SQLAlchemy's
    execute path cost a third of such a GET in-process (py-spy): the compiled-cache
    lookup, the result set-up (which reads the cursor's description: psycopg builds one
    Column object per column per call) and a Row per row. psycopg still prepares the
    statement after a few executions on a connection, as it does under SQLAlchemy.

    What SQLAlchemy would do around the statement is kept: its bind processors on the
    way in, its exception and connection (and pool) invalidation on an error, a tracing
    span. What it would do that this cannot is refused when the statement is made:
    unlabelled or duplicate columns, a column it would convert on the way out,
    parameters it expands at execution (IN lists) and defaults it computes in Python."""

    def __init__(self, statement: Select[Any]) -> None:
        keys = [column.key for column in statement.selected_columns]
        names = [key for key in keys if isinstance(key, str) and key.isidentifier()]
        if len(set(names)) != len(keys):
            raise ValueError(f"DriverQuery needs unique column labels, got {keys}")
        for column in statement.selected_columns:
            impl = column.type.dialect_impl(_DIALECT)
            if isinstance(impl, Numeric):
                # psycopg returns numeric as Decimal, which is what Numeric(asdecimal)
                # gives; a float column or asdecimal=False SQLAlchemy would convert.
                converted = isinstance(impl, Float) or not impl.asdecimal
            else:
                converted = impl.result_processor(_DIALECT, None) is not None
            if converted:
                raise ValueError(f"column {column.key} needs SQLAlchemy's result processing")
        compiled = statement.compile(dialect=_DIALECT)
        if compiled.post_compile_params:
            raise ValueError("DriverQuery cannot run parameters SQLAlchemy expands at execution (IN lists)")
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("DriverQuery cannot compute Python-side column defaults: pass the values")
        self.statement = statement
        self.sql = str(compiled)
        # Values the statement binds itself (a literal 0 in coalesce, say); a call's
        # parameters fill in the rest.
        self.bound = {
            name: compiled.params[name] for bind, name in compiled.bind_names.items() if not bind.required
        }
        # SQLAlchemy's conversions of parameters on the way in (a JSONB value wrapped
        # for psycopg, an array's items), applied as its execute path applies them.
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name, process in compiled._bind_processors.items():
            if not callable(process):  # a tuple IN's per-element processors
                raise ValueError(f"DriverQuery cannot run parameter {name} (SQLAlchemy expands it)")
            self.processors[name] = process
        self.row: Any = namedtuple("Row", names)  # type: ignore[misc]

    def one_or_none(self, session: Session, params: Mapping[str, Any]) -> Any | None:
        found = self._rows(session, params, at_most=2)
        if len(found) > 1:
            raise sa_exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.row._make(found[0]) if found else None

    def all(self, session: Session, params: Mapping[str, Any]) -> list[Any]:
        return [self.row._make(found) for found in self._rows(session, params)]

    def _parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = {**self.bound, **params}
        for name, process in self.processors.items():
            if name in values:
                values[name] = process(values[name])
        return values

    def _rows(self, session: Session, params: Mapping[str, Any], at_most: int | None = None) -> list[Any]:
        from db.ops import tracing  # db.ops builds on db.core: imported when first run

        connection = session.connection()
        dbapi = connection.connection.driver_connection
        assert dbapi is not None
        values = self._parameters(params)
        with tracing.statement_span(connection.engine.url.database, self.sql):
            try:
                with dbapi.execute(self.sql, values) as cursor:
                    return cursor.fetchall() if at_most is None else cursor.fetchmany(at_most)
            except BaseException as error:
                # SQLAlchemy's own handling: its exception (a lost database is the API's
                # 503), and on a disconnect this connection invalidated and the pool's
                # older ones recycled; an interrupt (gevent's Timeout) also invalidates.
                connection._handle_dbapi_exception(error, self.sql, values, None, None)
