"""One typed settings object, read from environment variables (12-factor).

Nothing else in the code base reads ``os.environ``; every knob is here, with its
default and the reason for it. ``deployment/.env.example`` lists them for operators.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from db.core.currencies import CURRENCY_EXPONENTS
from db.core.entropy import strength_bits
from db.core.money import MAX_DIGITS

# Only these may run without JWT_SECRET: they get a random secret of their own install,
# kept in DEV_SECRET_FILE (relative to the working directory, like .ledgerq/env).
RELAXED_ENVS = ("development", "test")
DEV_SECRET_FILE = Path(".ledgerq") / "jwt-secret"
# A JWT_SECRET below this estimated strength is refused in every environment.
MIN_SECRET_BITS = 96


def development_secret(path: Path = DEV_SECRET_FILE) -> str:
    """This install's development secret: read, or created once (owner-only) by whichever
    process gets there first."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


def psycopg_url(value: str) -> str:
    """Accept the plain URLs operators copy around and pin the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix) :]
    return value


class VariableFiles(PydanticBaseSettingsSource):
    """`<VARIABLE>_FILE=/path` sets any variable from that file's content, trailing
    newline stripped: Docker and Kubernetes secrets are mounted as files, and the compose
    stack generates its secrets into files (deployment/docker-compose.yml). A variable set
    directly wins over its _FILE."""

    def get_field_value(self, field, field_name):  # unused: __call__ reads every field
        return None, field_name, False

    def __call__(self) -> dict[str, str]:
        environ = {key.upper(): value for key, value in os.environ.items()}
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            alias = field.alias or name
            path = environ.get(f"{alias.upper()}_FILE")
            if path:
                try:
                    values[alias] = Path(path).read_text().rstrip("\r\n")
                except OSError as exc:
                    raise ConfigurationError(
                        f"ledgerq: invalid configuration, refusing to start:\n"
                        f"  - {alias}_FILE: cannot read {path}: {exc.strerror}"
                    ) from None
        return values


class Settings(BaseSettings):
    # `ledgerq up` writes the embedded servers' URLs to .ledgerq/env while it runs, so
    # `ledgerq users create`, `ledgerq verify`, ... in another terminal find them.
    # Real environment variables always win over the file.
    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        env_file=".ledgerq/env",
        env_file_encoding="utf-8",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return init_settings, env_settings, VariableFiles(settings_cls), dotenv_settings, file_secret_settings

    # --- environment ---------------------------------------------------------------
    # Unset means production: forgetting the variable must never relax anything.
    env: Literal["development", "test", "staging", "production"] = Field("production", alias="LEDGERQ_ENV")

    # --- infrastructure ------------------------------------------------------------
    database_url: str = Field("postgresql+psycopg://postgres@127.0.0.1:5432/test", alias="DATABASE_URL")
    # Optional streaming replica for heavy reads that may lag by the replication delay
    # (history, historical balances, ledger entries, audit log): the routes that say so
    # with @blp.reads_from_replica. Everything else, auth included, reads the primary.
    database_read_url: str | None = Field(None, alias="DATABASE_READ_URL")
    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")
    # Prefix of every Redis key we own (Dramatiq queues, rate-limit counters), so that
    # several stacks or test runs can share one Redis without touching each other.
    redis_namespace: str = Field("ledgerq", alias="LEDGERQ_REDIS_NAMESPACE")
    db_pool_size: int = Field(10, alias="LEDGERQ_DB_POOL_SIZE")
    # A stuck lock must fail fast and be retried rather than pin a worker thread.
    db_lock_timeout_ms: int = Field(5000, alias="LEDGERQ_DB_LOCK_TIMEOUT_MS")
    db_statement_timeout_ms: int = Field(30000, alias="LEDGERQ_DB_STATEMENT_TIMEOUT_MS")

    # --- auth ----------------------------------------------------------------------
    # Required outside development/test; there it defaults to the install's own
    # random secret (DEV_SECRET_FILE). Never a value printed in the source.
    jwt_secret: str = Field("", alias="JWT_SECRET")
    jwt_issuer: str = Field("ledgerq", alias="JWT_ISSUER")
    jwt_audience: str = Field("ledgerq-api", alias="JWT_AUDIENCE")
    access_token_ttl_s: int = Field(15 * 60, alias="ACCESS_TOKEN_TTL_SECONDS")
    refresh_token_ttl_s: int = Field(14 * 24 * 3600, alias="REFRESH_TOKEN_TTL_SECONDS")

    # --- rate limits ("10 per minute", "5/second;100/hour"; admins override the
    # default and money budgets per user: PUT /users/{id}/rate-limits) ---
    # Counters live in Redis under "<LEDGERQ_REDIS_NAMESPACE>:ratelimit"; if Redis is
    # unreachable each process falls back to in-memory counters (see deployment/AUTH.md).
    rate_limit_enabled: bool = Field(True, alias="LEDGERQ_RATE_LIMIT_ENABLED")
    # The most requests of one budget a process may take from Redis at once and admit
    # locally (1 % of the budget at most; 1: one round trip per request, exact to the
    # request). See deployment/AUTH.md "Leases".
    rate_limit_lease_max: int = Field(100, ge=1, alias="LEDGERQ_RATE_LIMIT_LEASE_MAX")
    # Every /api/v1 request, per authenticated user (or per IP without a valid token).
    rate_limit_default: str = Field("1200 per minute", alias="LEDGERQ_RATE_LIMIT_DEFAULT")
    # /auth/login, /auth/register, /auth/refresh, /auth/logout: brute force and spraying.
    rate_limit_auth_per_ip: str = Field("30 per minute", alias="LEDGERQ_RATE_LIMIT_AUTH_PER_IP")
    # Login: failed attempts per account (username and email are one) and client address;
    # register/refresh/logout: attempts per login name or token subject.
    rate_limit_auth_per_login: str = Field("10 per minute", alias="LEDGERQ_RATE_LIMIT_AUTH_PER_LOGIN")
    # Failed logins per account over every address: bounds a guesser with many addresses
    # (while it is exhausted the account's owner waits too, at most one window).
    rate_limit_auth_failures_per_account: str = Field(
        "50 per minute", alias="LEDGERQ_RATE_LIMIT_AUTH_FAILURES_PER_ACCOUNT"
    )
    # POST /transactions/* per user: bulk movement belongs in batches.
    rate_limit_money_per_user: str = Field("300 per minute", alias="LEDGERQ_RATE_LIMIT_MONEY_PER_USER")
    # PUT /users/{id} per user (password changes: guessing `current_password`).
    rate_limit_account_per_user: str = Field("20 per minute", alias="LEDGERQ_RATE_LIMIT_ACCOUNT_PER_USER")

    # --- money ---------------------------------------------------------------------
    # Largest amount of one transaction, in major units of its currency. Bounded so that
    # in minor units of every currency it stays below 10**18 (`db.core.money.MAX_DIGITS`):
    # one amount always fits a BIGINT; sums that would not are `amount_out_of_range`.
    max_amount: Decimal = Field(Decimal("1000000000"), gt=0, alias="LEDGERQ_MAX_AMOUNT")
    # Largest overdraft finance/admin may grant one account (PUT/PATCH .../limits), in
    # major units of its currency: a typo must not hand out unbounded credit. Above it:
    # 422 overdraft_cap_exceeded.
    max_overdraft: Decimal = Field(Decimal("100000"), ge=0, alias="LEDGERQ_MAX_OVERDRAFT")
    # Default limits on money leaving a user account (transfers and debits), each
    # overridable per account by finance/admin (PUT /accounts/{id}/limits). Unset means
    # no limit of that kind by default: treasury accounts that fund batches and standing
    # orders must not trip a velocity limit nobody configured. Amounts are major units
    # of the account's currency, like LEDGERQ_MAX_AMOUNT.
    default_max_per_transaction: Decimal | None = Field(
        None, gt=0, alias="LEDGERQ_DEFAULT_MAX_PER_TRANSACTION"
    )
    # Sum of completed + pending outgoing amounts per UTC calendar day.
    default_daily_outgoing_limit: Decimal | None = Field(
        None, gt=0, alias="LEDGERQ_DEFAULT_DAILY_OUTGOING_LIMIT"
    )
    # Number of outgoing transfers in any rolling 60 seconds.
    default_per_minute_outgoing_count: int | None = Field(
        None, gt=0, alias="LEDGERQ_DEFAULT_PER_MINUTE_OUTGOING_COUNT"
    )

    # --- HTTP ----------------------------------------------------------------------
    port: int = Field(8000, alias="PORT")
    web_host: str = Field("127.0.0.1", alias="WEB_HOST")
    # gevent workers: a request is a greenlet, so a long-poll (?wait=N) parks no OS
    # thread. WEB_CONNECTIONS caps the concurrent requests of one worker process;
    # WEB_THREADS applies only if WEB_WORKER_CLASS=gthread.
    web_workers: int = Field(2, alias="WEB_WORKERS")
    web_worker_class: Literal["gevent", "gthread"] = Field("gevent", alias="WEB_WORKER_CLASS")
    web_connections: int = Field(1000, alias="WEB_CONNECTIONS")
    web_threads: int = Field(8, alias="WEB_THREADS")
    max_content_length: int = Field(1 * 1024 * 1024, alias="LEDGERQ_MAX_BODY_BYTES")
    long_poll_max_s: int = Field(30, alias="LEDGERQ_LONG_POLL_MAX_SECONDS")
    # Concurrent ?wait= long-polls per user (over it: 429 rate_limited), across processes.
    long_poll_per_user: int = Field(10, alias="LEDGERQ_LONG_POLLS_PER_USER")
    page_size_max: int = Field(200, alias="LEDGERQ_PAGE_SIZE_MAX")
    # Comma-separated browser origins allowed to call the API ("https://app.example.com").
    # Empty (the default): no CORS headers at all, so browsers refuse cross-origin calls.
    cors_origins_csv: str = Field("", alias="LEDGERQ_CORS_ORIGINS")
    # Reverse proxies in front of us that set X-Forwarded-For/-Proto (0 = trust none).
    # Client IPs (rate limits) and "is this request HTTPS" (HSTS) depend on it.
    proxy_hops: int = Field(0, alias="LEDGERQ_PROXY_HOPS")
    # Strict-Transport-Security max-age, sent on HTTPS requests only (0 = never).
    hsts_max_age_s: int = Field(365 * 24 * 3600, alias="LEDGERQ_HSTS_SECONDS")

    # --- workers -------------------------------------------------------------------
    # Dramatiq's defaults (20 retries, backoff up to 7 days) would leave a client's
    # transfer pending for a week. 14 retries from 1 s doubling to a 10 min cap is
    # about an hour (1+2+...+512 s, then 4 x 600 s) before the row is dead-lettered.
    worker_max_retries: int = Field(14, alias="WORKER_MAX_RETRIES")
    worker_min_backoff_ms: int = Field(1000, alias="WORKER_MIN_BACKOFF_MS")
    worker_max_backoff_ms: int = Field(600_000, alias="WORKER_MAX_BACKOFF_MS")
    worker_processes: int = Field(2, alias="WORKER_PROCESSES")
    worker_threads: int = Field(4, alias="WORKER_THREADS")
    # Messages fetched ahead per queue and process. Prefetched messages die with a
    # killed worker and only come back after heartbeat_timeout, so keep it small.
    worker_prefetch: int = Field(2, alias="WORKER_PREFETCH")
    # A `transactions.apply` message is a wake-up: its worker claims up to this many
    # pending transfers (its own first, then the oldest never tried) and applies them in
    # one DB transaction. 1 means one transfer per message.
    apply_claim_size: int = Field(100, ge=1, le=5000, alias="LEDGERQ_APPLY_CLAIM_SIZE")
    # How long a woken worker waits before it starts (and clears the wake-up flag), when
    # senders are coalescing onto its message: the transfers accepted meanwhile send no
    # message and join its group. Under sustained load a wake-up otherwise finds one or
    # two rows, and each transfer pays a whole group's fixed cost (measured: README
    # Performance). 0: start at once. Kept under wake_ups.TTL_MS (1 s).
    apply_linger_ms: int = Field(20, ge=0, le=500, alias="LEDGERQ_APPLY_LINGER_MS")
    # A worker that has not talked to Redis for this long is presumed dead and its
    # unacked messages are requeued (Dramatiq default 60 s). It must stay above the
    # longest actor time limit, because a busy worker with a full prefetch buffer
    # sends no heartbeat.
    broker_heartbeat_timeout_ms: int = Field(30_000, alias="BROKER_HEARTBEAT_TIMEOUT_MS")
    # How many broker commands in a million run the requeue-dead-workers maintenance
    # (Dramatiq default 1000 = 0.1 %, which left a SIGKILLed worker's messages stranded
    # for more than 7 minutes). 5 % costs one cheap Lua pass every ~20 commands.
    broker_maintenance_chance: int = Field(50_000, alias="BROKER_MAINTENANCE_CHANCE")
    # Dramatiq deletes dead letters after this (default 7 days). The row keeps status
    # `dead_lettered` forever, so nothing depends on Redis remembering; 30 days gives
    # ops a month to inspect the message itself.
    broker_dead_message_ttl_ms: int = Field(30 * 86_400_000, alias="BROKER_DEAD_MESSAGE_TTL_MS")
    # Prometheus exposition of the worker group (Dramatiq's Prometheus middleware, which
    # aggregates every worker process). `ledgerq worker` turns it on; 0 disables.
    worker_metrics_port: int = Field(9191, alias="WORKER_METRICS_PORT")
    worker_metrics_enabled: bool = Field(False, alias="LEDGERQ_WORKER_METRICS")
    apply_time_limit_ms: int = Field(40_000, alias="WORKER_APPLY_TIME_LIMIT_MS")

    # --- scheduler -----------------------------------------------------------------
    # A `pending` row untouched for this long is re-enqueued (Redis lost it, or was
    # down when the API accepted it). Redelivery is harmless, so err on the short side.
    sweeper_stale_after_s: int = Field(30, alias="SWEEPER_STALE_AFTER_SECONDS")
    sweeper_interval_s: int = Field(5, alias="SWEEPER_INTERVAL_SECONDS")
    sweeper_batch_size: int = Field(500, alias="SWEEPER_BATCH_SIZE")
    # How often the leader sends the release/standing-order ticks: the bound on how late
    # a due transfer is released under normal load.
    scheduler_tick_s: float = Field(1.0, alias="SCHEDULER_TICK_SECONDS")
    # How often a standby retries the leader lock (and the leader checks it still holds it).
    scheduler_leader_retry_s: float = Field(5.0, alias="SCHEDULER_LEADER_RETRY_SECONDS")
    # Prometheus endpoint of the scheduler process (queue gauges); 0 disables it.
    scheduler_metrics_port: int = Field(9101, alias="SCHEDULER_METRICS_PORT")
    scheduler_queue_gauges_s: float = Field(15.0, alias="SCHEDULER_QUEUE_GAUGE_SECONDS")

    # --- scheduled transfers and standing orders -----------------------------------
    # `scheduled_for` / `start_at` further ahead than this is refused (422): a typo in
    # the year should not park money for a decade.
    schedule_horizon_days: int = Field(365, alias="SCHEDULE_HORIZON_DAYS")
    # Smallest `interval_seconds` a standing order may use (cron has minute resolution).
    schedule_min_interval_s: int = Field(60, alias="SCHEDULE_MIN_INTERVAL_SECONDS")
    # A standing order pauses itself after this many failed runs in a row (0: never).
    schedule_max_consecutive_failures: int = Field(3, alias="SCHEDULE_MAX_CONSECUTIVE_FAILURES")
    # Policy `skip`: a missed run later than this is skipped (and recorded), not run.
    schedule_misfire_grace_s: int = Field(300, alias="SCHEDULE_MISFIRE_GRACE_SECONDS")

    # --- metrics (db/ops/metrics.py) ---------------------------------------------
    # Set (by api/gunicorn_conf.py, `ledgerq worker`) when several processes of one group
    # share one /metrics view, with the pid of the group's root for `process_*`.
    prometheus_multiproc_dir: str | None = Field(None, alias="PROMETHEUS_MULTIPROC_DIR")
    metrics_group_pid: int | None = Field(None, alias="LEDGERQ_METRICS_GROUP_PID")
    # Optional protection of every /metrics endpoint (web, worker groups, scheduler):
    # a bearer token Prometheus sends (`authorization: {credentials_file: ...}`) and/or
    # comma-separated client networks ("10.0.0.0/8,127.0.0.1"). Unset: open, which is
    # only right where the ports are not reachable from outside (deployment/README.md).
    metrics_token: str | None = Field(None, alias="LEDGERQ_METRICS_TOKEN")
    metrics_allow_csv: str = Field("", alias="LEDGERQ_METRICS_ALLOW")
    # Shown as `ledgerq_build_info{revision=...}` (the Dockerfile's BUILD_REVISION).
    build_revision: str = Field("unknown", alias="LEDGERQ_BUILD_REVISION")
    # --- batches (finance bulk files) -----------------------------------------------
    # Over these limits an upload is refused with 413 (the message names the limit).
    batch_max_bytes: int = Field(256 * 1024 * 1024, alias="LEDGERQ_BATCH_MAX_BYTES")
    batch_max_lines: int = Field(1_000_000, alias="LEDGERQ_BATCH_MAX_LINES")
    # JSON batches (`{"items": [...]}`) are parsed in memory, so they get a smaller cap.
    batch_max_json_bytes: int = Field(16 * 1024 * 1024, alias="LEDGERQ_BATCH_MAX_JSON_BYTES")
    # A longer line is rejected on its own (code line_too_long) without being held whole.
    batch_max_line_bytes: int = Field(4096, alias="LEDGERQ_BATCH_MAX_LINE_BYTES")
    # Files up to this many lines are validated inside the upload request (the 202 then
    # carries every count); bigger ones are stored and validated by the `batches` worker.
    batch_sync_ingest_max_lines: int = Field(10_000, alias="LEDGERQ_BATCH_SYNC_INGEST_MAX_LINES")
    # Lines applied per DB transaction by `batches.apply_chunk` (independent mode).
    batch_chunk_size: int = Field(2000, alias="LEDGERQ_BATCH_CHUNK_SIZE")
    # One apply_chunk message keeps applying chunks (one DB transaction each) for this
    # long before handing over to a fresh message: no queue round trip per chunk, yet
    # no message runs for minutes.
    batch_message_budget_s: float = Field(10.0, alias="LEDGERQ_BATCH_MESSAGE_BUDGET_SECONDS")
    # Ingesting or atomically applying a million lines takes minutes, not the 20 s of a
    # single transfer (see workers/batches.py).
    batch_time_limit_ms: int = Field(30 * 60_000, alias="WORKER_BATCH_TIME_LIMIT_MS")
    # A processing batch whose cursor has not moved for this long gets its next chunk
    # re-sent (Redis lost the message); a duplicate is a no-op.
    batch_stale_after_s: int = Field(60, alias="LEDGERQ_BATCH_STALE_AFTER_SECONDS")
    # Rejected lines listed in a dry-run report (the counts always cover every line).
    batch_dry_run_max_reported: int = Field(10_000, alias="LEDGERQ_BATCH_DRY_RUN_MAX_REPORTED")
    # Inbox: files dropped here are ingested by the scheduler as `batch_inbox_user`
    # (a finance or admin username) and moved to processed/ or rejected/ beside them.
    batch_inbox_dir: str | None = Field(None, alias="LEDGERQ_BATCH_INBOX_DIR")
    batch_inbox_user: str | None = Field(None, alias="LEDGERQ_BATCH_INBOX_USER")
    batch_inbox_interval_s: int = Field(5, alias="LEDGERQ_BATCH_INBOX_INTERVAL_SECONDS")
    # A file modified less than this long ago may still be being written: wait.
    batch_inbox_settle_s: float = Field(2.0, alias="LEDGERQ_BATCH_INBOX_SETTLE_SECONDS")

    # --- events and webhooks (deployment/EVENTS.md) ------------------------------------
    # The contract keeps events at least 30 days; the prune tick deletes older ones.
    event_retention_days: int = Field(30, ge=30, alias="LEDGERQ_EVENT_RETENTION_DAYS")
    event_prune_interval_s: int = Field(3600, alias="LEDGERQ_EVENT_PRUNE_INTERVAL_SECONDS")
    # Development and tests only: allow plain http and private/loopback webhook hosts.
    webhook_allow_private_hosts: bool = Field(False, alias="WEBHOOK_ALLOW_PRIVATE_HOSTS")
    # Key that encrypts webhook signing secrets at rest; derived from JWT_SECRET when unset.
    webhook_secret_key: str | None = Field(None, alias="WEBHOOK_SECRET_KEY")
    # A 2xx answer within this many seconds is a delivery (the contract says 10).
    webhook_timeout_s: float = Field(10.0, gt=0, le=10, alias="WEBHOOK_TIMEOUT_SECONDS")
    # Backoff after the n-th failed attempt: base * 2^(n-1), capped, times a jitter in
    # [0.5, 1]; the first retry comes within `base` seconds (contract: within a minute).
    webhook_retry_base_s: float = Field(20.0, gt=0, le=60, alias="WEBHOOK_RETRY_BASE_SECONDS")
    webhook_retry_max_delay_s: float = Field(3600.0, gt=0, alias="WEBHOOK_RETRY_MAX_DELAY_SECONDS")
    # Retried for this long after the first attempt was due, then `failed` (contract: >= 24 h).
    webhook_retry_window_s: float = Field(25 * 3600.0, gt=0, alias="WEBHOOK_RETRY_WINDOW_SECONDS")
    # Deliveries in flight per endpoint: a slow endpoint holds at most this many workers.
    webhook_max_in_flight: int = Field(4, ge=1, alias="WEBHOOK_MAX_IN_FLIGHT")
    # Consecutive failures that open an endpoint's circuit; the first pause, doubled on
    # every failed probe up to the maximum.
    webhook_breaker_threshold: int = Field(5, ge=1, alias="WEBHOOK_BREAKER_THRESHOLD")
    webhook_breaker_cooldown_s: float = Field(30.0, gt=0, alias="WEBHOOK_BREAKER_COOLDOWN_SECONDS")
    webhook_breaker_max_cooldown_s: float = Field(600.0, gt=0, alias="WEBHOOK_BREAKER_MAX_COOLDOWN_SECONDS")
    # Events fanned out to subscriptions per dispatch tick.
    webhook_dispatch_batch: int = Field(1000, ge=1, alias="WEBHOOK_DISPATCH_BATCH")

    # --- logging -------------------------------------------------------------------
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["console", "json", "auto"] = Field("auto", alias="LOG_FORMAT")

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _use_psycopg3(cls, value: str | None) -> str | None:
        return psycopg_url(value) if value else None

    @model_validator(mode="after")
    def _secret_strong(self) -> Settings:
        generate = "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        if not self.jwt_secret:
            if self.env not in RELAXED_ENVS:
                raise ValueError(f"JWT_SECRET must be set when LEDGERQ_ENV={self.env} {generate}")
            self.jwt_secret = development_secret()
        if len(self.jwt_secret.encode()) < 32 or strength_bits(self.jwt_secret) < MIN_SECRET_BITS:
            raise ValueError(
                "JWT_SECRET must be a random value of at least 32 bytes "
                f"(about {MIN_SECRET_BITS} bits of entropy; this one is guessable) {generate}"
            )
        return self

    @field_validator("max_amount")
    @classmethod
    def _max_amount_fits_minor_units(cls, value: Decimal) -> Decimal:
        places = max(CURRENCY_EXPONENTS.values())
        if value.scaleb(places) >= Decimal(10) ** MAX_DIGITS:
            raise ValueError(
                f"LEDGERQ_MAX_AMOUNT x 10^{places} (the most decimals of a currency) must stay "
                f"below 10^{MAX_DIGITS} minor units; at most {Decimal(10) ** (MAX_DIGITS - places) - 1}"
            )
        return value

    @model_validator(mode="after")
    def _time_limit_above_the_database_timeouts(self) -> Settings:
        # A transfer waiting on a lock must hear the database's lock or statement timeout
        # (transient, retried) before the worker's time limit interrupts it mid-query.
        if self.apply_time_limit_ms <= max(self.db_lock_timeout_ms, self.db_statement_timeout_ms):
            raise ValueError(
                "WORKER_APPLY_TIME_LIMIT_MS must be above LEDGERQ_DB_LOCK_TIMEOUT_MS and "
                "LEDGERQ_DB_STATEMENT_TIMEOUT_MS"
            )
        return self

    @field_validator("metrics_allow_csv")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"LEDGERQ_METRICS_ALLOW: {part!r} is not an IP address or network") from None
        return value

    @property
    def metrics_allow_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        parts = filter(None, (p.strip() for p in self.metrics_allow_csv.split(",")))
        return [ipaddress.ip_network(part, strict=False) for part in parts]

    @property
    def cors_origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins_csv.split(",") if origin.strip()]

    @property
    def is_production(self) -> bool:
        return self.env == "production"


class ConfigurationError(SystemExit):
    """Invalid settings: the process refuses to start and says why, without a traceback."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()  # type: ignore[call-arg]
    except ValidationError as error:
        # Field names and messages only: never the offending input, which may be a secret.
        problems = "\n".join(
            f"  - {'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}"
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise ConfigurationError(f"ledgerq: invalid configuration, refusing to start:\n{problems}") from None
