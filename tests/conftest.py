"""Session set-up: real PostgreSQL + Redis, a database built by the migrations, and
settings tuned so retries and the sweeper act in milliseconds, not minutes."""

from __future__ import annotations

import os

from tests.fixtures import infra

# Before anything imports db.core.config (settings are read once per process).
os.environ.update(infra.provision())
os.environ.update(
    {
        "LEDGERQ_ENV": "test",
        "LOG_FORMAT": "json",
        "JWT_SECRET": "test-secret-that-is-at-least-32-bytes-long!!",
        "WORKER_MAX_RETRIES": "3",
        "WORKER_MIN_BACKOFF_MS": "50",
        "WORKER_MAX_BACKOFF_MS": "200",
        "SWEEPER_STALE_AFTER_SECONDS": "1",
        "BROKER_HEARTBEAT_TIMEOUT_MS": "3000",
        "BROKER_MAINTENANCE_CHANCE": "200000",
        # Tests that are not about rate limits must not trip them (one IP, many logins);
        # tests/api/extensions/test_rate_limit.py builds apps with tight limits of its own.
        "LEDGERQ_RATE_LIMIT_DEFAULT": "100000 per minute",
        "LEDGERQ_RATE_LIMIT_AUTH_PER_IP": "100000 per minute",
        "LEDGERQ_RATE_LIMIT_AUTH_PER_LOGIN": "100000 per minute",
        "LEDGERQ_RATE_LIMIT_AUTH_FAILURES_PER_ACCOUNT": "100000 per minute",
        "LEDGERQ_RATE_LIMIT_MONEY_PER_USER": "100000 per minute",
        "LEDGERQ_RATE_LIMIT_ACCOUNT_PER_USER": "100000 per minute",
        # Webhook receivers in tests listen on 127.0.0.1 over plain http; retries and the
        # circuit breaker act in fractions of a second (tests/api/webhooks/).
        "WEBHOOK_ALLOW_PRIVATE_HOSTS": "true",
        "WEBHOOK_TIMEOUT_SECONDS": "2",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "WEBHOOK_RETRY_MAX_DELAY_SECONDS": "1",
        "WEBHOOK_MAX_IN_FLIGHT": "2",
        "WEBHOOK_BREAKER_THRESHOLD": "3",
        "WEBHOOK_BREAKER_COOLDOWN_SECONDS": "1",
        "WEBHOOK_BREAKER_MAX_COOLDOWN_SECONDS": "2",
    }
)

import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402

from db.core.config import get_settings  # noqa: E402
from db.migrate import upgrade  # noqa: E402

upgrade(get_settings().database_url)

# The shared pytest fixtures: `app`, `client` (http), `make` (builders), `worker` (broker).
pytest_plugins = ["tests.fixtures.http", "tests.fixtures.builders", "tests.fixtures.broker"]

# Tables emptied between tests (currencies and alembic_version are reference data).
_TABLES = ["ledger_entries", "audit_logs", "refresh_tokens", "transactions", "balances", "accounts", "users"]


@pytest.fixture(autouse=True)
def clean_state():
    """Every test starts with empty tables and an empty Redis namespace."""
    yield
    from db.session import get_engine

    with get_engine().begin() as connection:
        existing = set(
            connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'")).scalars()
        )
        tables = [t for t in _TABLES if t in existing] + sorted(
            existing - set(_TABLES) - {"alembic_version", "currencies"}
        )
        # ledger_entries and audit_logs refuse TRUNCATE (migration 0007); a replica-role
        # session (superuser only, this transaction only) skips ordinary triggers.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    from tests.fixtures.broker import flush_namespace

    flush_namespace()
