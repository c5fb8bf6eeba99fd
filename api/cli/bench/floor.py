"""The stack's floor: the least the fixed stack costs for the I/O one accepted transfer
(and one status read) needs, with no ledgerq code on the request path.

`ledgerq bench floor` serves this app with the web process's own gunicorn settings
(api/gunicorn_conf.py: the same worker class, workers and connections) and drives it
with the same load generator as `accept` and `poll`. Each request makes the round trips
the real route makes (two to PostgreSQL, one to Redis plus one per rate-limit lease, no
BEGIN/COMMIT), through the same libraries:

- POST /api/v1/transactions/transfer: parse the JSON body (orjson), check the bearer
  token (PyJWT, the same claims as db/core/jwt_codec.py), one rate-limit script call
  (redis EVALSHA) per lease of 100 requests, as the real limiter leases a large budget
  (api/extensions/rate_limit.py), read both accounts in one SELECT, record the transfer and answer with
  its row in one INSERT ... RETURNING (psycopg, autocommit, prepared), claim the
  wake-up (redis SET NX), answer 202 with the row as JSON;
- GET /api/v1/transactions/<id>: the token, the rate limit, one SELECT, 200 as JSON.

No validation schema, no ORM, no access log, no metrics, and less than the real route
must do: no audit row or `transaction.created` event in the write, no limit-usage read,
no request fingerprint, no `active` check, a table with one index instead of sixteen and
no analytics trigger. Skipping only makes the floor faster, so a ratio the floor does
not reach on this machine is out of reach for the real API on it, whatever is
optimised; the gap between the floor and `accept`/`poll` is ledgerq's own code, part of
it work a payments API cannot skip.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import jwt
import orjson
import psycopg
import redis
from flask import Flask, Response, request
from sqlalchemy import create_engine, event

from db.core.config import get_settings

TABLE = "bench_floor_transfers"

# The real table's shape where it matters to the write: a uuid key, the idempotency
# key unique per creator, the amount in minor units, timestamps set by the database.
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    type text NOT NULL DEFAULT 'transfer',
    status text NOT NULL DEFAULT 'pending',
    from_account_id uuid NOT NULL,
    to_account_id uuid NOT NULL,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    created_by uuid NOT NULL,
    idempotency_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (created_by, idempotency_key)
)
"""

_ACCOUNTS = "SELECT id, owner_id, currency, status FROM accounts WHERE id = ANY(%s)"
_INSERT = (
    f"INSERT INTO {TABLE} (from_account_id, to_account_id, amount_minor, currency, created_by, idempotency_key)"
    " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, status, created_at, updated_at"
)
_READ = f"SELECT id, status, amount_minor, currency, created_at, updated_at FROM {TABLE} WHERE id = %s AND created_by = %s"
# A fixed-window counter counting a lease at once: what any limiter's script does at the least.
_LIMIT_SCRIPT = (
    "local n = redis.call('INCRBY', KEYS[1], ARGV[1])"
    " if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], 60) end return n"
)
_LIMIT_PER_MINUTE = 1_000_000_000
_LEASE = 100


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def create_app() -> Flask:
    settings = get_settings()
    engine = create_engine(
        settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size
    )

    @event.listens_for(engine, "connect")
    def _autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.autocommit = True

    @contextlib.contextmanager
    def connection() -> Iterator[psycopg.Connection]:
        pooled = engine.raw_connection()
        try:
            assert pooled.driver_connection is not None
            yield pooled.driver_connection
        finally:
            pooled.close()  # back to the pool

    cache = redis.Redis.from_url(settings.redis_url)
    limit_sha = cache.script_load(_LIMIT_SCRIPT)
    # Requests each user may still make from its lease. Neither expired nor locked: enough
    # for the bench (one window of a limit it never reaches, gevent's one thread); the
    # real limiter (api/extensions/rate_limit.py Leases) does both.
    leased: dict[uuid.UUID, int] = {}
    app = Flask(__name__)

    def principal() -> uuid.UUID | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            claims = jwt.decode(
                header[7:],
                settings.jwt_secret,
                algorithms=["HS256"],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        return uuid.UUID(claims["sub"])

    def refused(user: uuid.UUID | None) -> Response | None:
        if user is None:
            return _json({"error": {"code": "unauthorized"}}, 401)
        if leased.get(user, 0) > 0:
            leased[user] -= 1
            return None
        if int(cache.evalsha(limit_sha, 1, f"floor:{user}", _LEASE)) > _LIMIT_PER_MINUTE:
            return _json({"error": {"code": "rate_limited"}}, 429)
        leased[user] = _LEASE - 1
        return None

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"}, 200)

    @app.post("/api/v1/transactions/transfer")
    def transfer() -> Response:
        user = principal()
        if (answer := refused(user)) is not None:
            return answer
        body = orjson.loads(request.get_data())
        source, target = uuid.UUID(body["from_account_id"]), uuid.UUID(body["to_account_id"])
        amount_minor = int(Decimal(body["amount"]).scaleb(2))
        with connection() as db:
            accounts = {row[0]: row for row in db.execute(_ACCOUNTS, [[source, target]])}
            if (
                len(accounts) != 2
                or accounts[source][1] != user
                or {row[2] for row in accounts.values()} != {body["currency"]}
            ):
                return _json({"error": {"code": "validation_error"}}, 422)
            row = db.execute(
                _INSERT,
                (source, target, amount_minor, body["currency"], user, request.headers["Idempotency-Key"]),
            ).fetchone()
        assert row is not None
        cache.set("floor:wake", b"1", nx=True, ex=5)
        return _json(
            {
                "id": str(row[0]),
                "type": "transfer",
                "status": row[1],
                "from_account_id": str(source),
                "to_account_id": str(target),
                "amount": body["amount"],
                "currency": body["currency"],
                "created_at": row[2].isoformat(),
                "updated_at": row[3].isoformat(),
            },
            202,
        )

    @app.get("/api/v1/transactions/<transaction_id>")
    def read(transaction_id: str) -> Response:
        user = principal()
        if (answer := refused(user)) is not None:
            return answer
        with connection() as db:
            row = db.execute(_READ, (uuid.UUID(transaction_id), user)).fetchone()
        if row is None:
            return _json({"error": {"code": "not_found"}}, 404)
        return _json(
            {
                "id": str(row[0]),
                "status": row[1],
                "amount": str(Decimal(row[2]).scaleb(-2)),
                "currency": row[3],
                "created_at": row[4].isoformat(),
                "updated_at": row[5].isoformat(),
            },
            200,
        )

    return app
