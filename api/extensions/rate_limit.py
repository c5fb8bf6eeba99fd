"""Rate limits: Flask-Limiter with its counters in Redis, one policy table.

- Every /api/v1 request counts against the caller's default budget
  (`LEDGERQ_RATE_LIMIT_DEFAULT`), keyed by user id when the request carries a valid
  access token, else by client IP.
- Views tagged `@blp.rate_limit("auth")` (register, refresh, logout) are also
  limited per client IP and per login name (or per token subject on refresh/logout),
  so neither one address spraying many names nor many addresses hammering one name
  gets far. Login (`"login"`) shares the per-IP budget, but its per-account limit
  counts *failures* (`LoginFailures`): keyed on the account the name resolves to
  (username and email are one budget), per client address
  (`LEDGERQ_RATE_LIMIT_AUTH_PER_LOGIN`, so a guesser elsewhere does not lock the owner
  out) and over all addresses (`LEDGERQ_RATE_LIMIT_AUTH_FAILURES_PER_ACCOUNT`).
- Every POST of a money-moving blueprint (`MONEY_BLUEPRINTS`) is limited per user,
  so a new money endpoint is covered without anyone remembering to tag it.
- `@blp.rate_limit("account")` (PUT /users/{id}) is limited per user: guessing
  `current_password` with a stolen access token is slow.

Breaches answer 429 `rate_limited` with `Retry-After` (api/extensions/errors.py).

If Redis is unreachable, Flask-Limiter switches each process to in-memory counters (the
same limits, per process, so N processes allow up to N times as much) and probes Redis
again with backoff; if even that fails, errors are swallowed and the request is served.
Rate limiting never takes the API down.

The limiter is built per app (like flask-smorest's `Api`): its storage, key prefix and
limits come from that app's settings, so tests can run apps with their own windows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request
from flask_limiter import ApplicationLimit, Limit, Limiter
from limits import parse_many

from api.extensions.auth import token_subject
from api.extensions.smorest import RATE_LIMIT_ATTRIBUTE
from db.core import jwt_codec
from db.core.config import ConfigurationError, Settings
from db.core.errors import RateLimited, Unauthorized

EXTENSION_KEY = "ledgerq_limiter"
MONEY_BLUEPRINTS = ("transactions", "batches")


def client_ip() -> str:
    # Behind proxies, ProxyFix (LEDGERQ_PROXY_HOPS) has already put the client's address here.
    return request.remote_addr or "unknown"


def ip_key() -> str:
    return f"ip:{client_ip()}"


def caller_key() -> str:
    subject = token_subject()
    return f"user:{subject}" if subject else ip_key()


def login_key() -> str:
    """The account an auth request is about: the login name sent, or the subject of
    the refresh token sent. Computed before the body is validated, so defensive."""
    try:
        body = request.get_json(silent=True)
    except Exception:  # noqa: BLE001 - e.g. 413: the view will answer it
        body = None
    if not isinstance(body, dict):
        return ip_key()
    login = body.get("username") or body.get("email")
    if isinstance(login, str) and login.strip():
        return f"login:{login.strip().lower()[:254]}"
    refresh = body.get("refresh_token")
    if isinstance(refresh, str):
        try:
            claims = jwt_codec.decode(current_app.config["LEDGERQ_SETTINGS"], refresh, "refresh")
        except Unauthorized:
            return "login:<invalid token>"  # one shared bucket for every forged token
        return f"user:{claims['sub_id']}"
    return ip_key()


# policy -> (settings field with the limit string, key function)
POLICIES: dict[str, tuple[tuple[str, Callable[[], str]], ...]] = {
    "auth": (("rate_limit_auth_per_ip", ip_key), ("rate_limit_auth_per_login", login_key)),
    "login": (("rate_limit_auth_per_ip", ip_key),),
    "money": (("rate_limit_money_per_user", caller_key),),
    "account": (("rate_limit_account_per_user", caller_key),),
}


# Policies that draw on another's budget: login and register share the per-IP one.
_SCOPE_OF = {"login": "auth"}


class LoginFailures:
    """Failed logins per resolved account: per (account, client IP) and per account over
    every address. Checked before the password, counted only when it was wrong."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.limits = [
            (parse_many(_checked(settings, field))[0], per_ip)
            for field, per_ip in (
                ("rate_limit_auth_per_login", True),
                ("rate_limit_auth_failures_per_account", False),
            )
        ]

    def _keys(self, account: str):
        limiter: Limiter = current_app.extensions[EXTENSION_KEY]
        for item, per_ip in self.limits:
            yield limiter.limiter, item, ("login-failures", account, client_ip() if per_ip else "*")

    def refuse_if_exhausted(self, account: str) -> None:
        if not self.enabled:
            return
        for strategy, item, key in self._keys(account):
            try:
                allowed = strategy.test(item, *key)
                reset_at = None if allowed else strategy.get_window_stats(item, *key).reset_time
            except Exception:  # noqa: BLE001 - storage down: rate limiting never takes the API down
                return
            if not allowed:
                retry_after = max(1, math.ceil((reset_at or time.time() + 1) - time.time()))
                raise RateLimited(
                    f"Too many failed logins; retry in {retry_after} s.",
                    {"retry_after": retry_after},
                )

    def record_failure(self, account: str) -> None:
        if not self.enabled:
            return
        for strategy, item, key in self._keys(account):
            try:
                strategy.hit(item, *key)
            except Exception:  # noqa: BLE001 - as above
                return


def _policies_of_request() -> set[str]:
    policies = set()
    if request.method == "POST" and request.blueprint in MONEY_BLUEPRINTS:
        policies.add("money")
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, request.method.lower(), None) if view_class else view
    tagged = getattr(handler, RATE_LIMIT_ATTRIBUTE, None)
    if tagged:
        policies.add(tagged)
    return policies


def _exempt_unless(policy: str) -> Callable[[], bool]:
    return lambda: policy not in _policies_of_request()


def _not_rate_limited() -> bool:
    """Probes, metrics, the API docs and CORS preflights are never limited."""
    return (
        request.method == "OPTIONS"
        or not request.path.startswith("/api/v1/")
        or request.path == "/api/v1/openapi.json"
    )


def _checked(settings: Settings, field: str) -> str:
    value = getattr(settings, field)
    try:
        parse_many(value) if value else None
    except ValueError:
        alias = Settings.model_fields[field].alias
        raise ConfigurationError(
            f"ledgerq: {alias}={value!r} is not a rate limit "
            "(write e.g. '10 per minute' or '5/second;100/hour')"
        ) from None
    return value


def build_limiter(settings: Settings) -> Limiter:
    policy_limits: list[str | Callable[[], str] | Limit] = [
        Limit(
            limit_provider=_checked(settings, field),
            key_function=key_function,
            # Shared: one budget across the policy's endpoints (transfer, credit and
            # debit draw on the same per-user allowance).
            scope=f"{_SCOPE_OF.get(policy, policy)}:{field}",
            shared=True,
            exempt_when=_exempt_unless(policy),
        )
        for policy, rules in POLICIES.items()
        for field, key_function in rules
    ]
    storage_options: dict[str, Any] = {
        "key_prefix": f"{settings.redis_namespace}:ratelimit",
        # Never let a hung Redis hang requests: fail over to memory quickly.
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
    }
    return Limiter(
        key_func=caller_key,
        application_limits=[
            ApplicationLimit(
                limit_provider=_checked(settings, "rate_limit_default"), key_function=caller_key, scope="api"
            )
        ],
        default_limits=policy_limits,
        storage_uri=settings.redis_url,
        storage_options=storage_options,
        strategy="fixed-window",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,  # Retry-After is ours (see retry_after_seconds)
        enabled=settings.rate_limit_enabled,
    )


def init_app(app: Flask, settings: Settings) -> None:
    limiter = build_limiter(settings)
    limiter.request_filter(_not_rate_limited)
    limiter.init_app(app)
    app.extensions[EXTENSION_KEY] = limiter
    app.extensions["ledgerq_login_failures"] = LoginFailures(settings)


def retry_after_seconds(default: int) -> int:
    """Whole seconds until the breached window resets (at least 1)."""
    limiter: Limiter | None = current_app.extensions.get(EXTENSION_KEY)
    try:
        reset_at = limiter.current_limit.window.reset_time if limiter and limiter.current_limit else None
    except Exception:  # noqa: BLE001 - storage gone between the breach and now
        reset_at = None
    if reset_at is None:
        return max(1, default)
    return max(1, math.ceil(reset_at - time.time()))
