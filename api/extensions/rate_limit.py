"""Rate limits: every budget a request draws on, checked and counted in ONE Redis round
trip (one Lua script), with per-user overrides set by admins.

- Every /api/v1 request counts against the caller's request budget
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
- An admin may give one user other `requests` and `money` budgets
  (`PUT /api/v1/users/{id}/rate-limits`, `ledgerq users rate-limits`): a service user
  for an integration. Stored in PostgreSQL (db/auth/rate_limits.py), mirrored into a Redis
  hash the script reads. The mirror is reloaded from the database when a change is
  committed and at least every `OVERRIDES_RELOAD_S`.

Fixed windows that start at a key's first request (as Flask-Limiter's "fixed-window",
which this replaced: the same limits mean the same thing). The script first checks every
budget, then counts the request in all of them only if none is exhausted: a refused
request does not use up the other budgets. Breaches answer 429 `rate_limited` with
`Retry-After` (the seconds until the breached window ends).

Leases: for a large budget the script counts a small lease at once, 1 % of the budget
and at most `LEDGERQ_RATE_LIMIT_LEASE_MAX` (100) requests, and this process spends it
locally until it runs out or its window ends. A service user at 60,000 per minute then
costs one Redis round trip per 100 requests of a process instead of one per request,
which was ~11 % of a read's CPU. The limit itself stays exact from above (every request
admitted was counted in Redis before it was admitted, in the window it falls in); what
leases give up is at most one unspent lease per process and budget (refills are one at
a time: `Leases`): a caller may be refused up to that many requests early, and a lowered override takes effect once the
leases already taken are spent. Budgets under 200 per window never lease (1 % < 2).

If Redis is unreachable, each process counts in memory (the same limits, per process,
so N processes allow up to N times as much) and tries Redis again after
`REDIS_RETRY_S`. Rate limiting never takes the API down.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, current_app, request

from api.extensions.auth import token_subject
from api.extensions.smorest import RATE_LIMIT_ATTRIBUTE
from db.auth import rate_limits as overrides
from db.core import jwt_codec
from db.core.config import ConfigurationError, Settings
from db.core.errors import RateLimited, Unauthorized
from db.core.logs import get_logger
from db.session import session_factory

log = get_logger(__name__)

EXTENSION_KEY = "ledgerq_limiter"
MONEY_BLUEPRINTS = ("transactions", "batches")
OVERRIDES_RELOAD_S = 60
REDIS_RETRY_S = 5.0


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


# policy -> its budgets: (scope, settings field with the limit string, key function).
# The scopes "requests" and "money" are the ones an admin override may replace.
POLICIES: dict[str, tuple[tuple[str, str, Callable[[], str]], ...]] = {
    "default": (("requests", "rate_limit_default", caller_key),),
    "auth": (
        ("auth_ip", "rate_limit_auth_per_ip", ip_key),
        ("auth_login", "rate_limit_auth_per_login", login_key),
    ),
    # Login shares the per-IP budget of "auth"; its per-account limit counts failures
    # (LoginFailures).
    "login": (("auth_ip", "rate_limit_auth_per_ip", ip_key),),
    "money": (("money", "rate_limit_money_per_user", caller_key),),
    "account": (("account", "rate_limit_account_per_user", caller_key),),
}

# KEYS[1] the overrides hash, KEYS[2] its "loaded" marker.
# ARGV[1] counter key prefix, then per budget: scope, key, spec, subject (the user an
# override may apply to, or ""), and the most requests to count at once (the lease this
# process asks for; 1: this request only). A spec is "amount:seconds[;amount:seconds]".
# Returns {1, counted, ttl_ms, counted, ttl_ms, ...} (counted; per budget, in order: how
# many requests were counted for it, this one included, and the ms until the first of
# its windows ends; a budget with no limit counts nothing: 1 and 0), {0, retry_after,
# limit} (refused) or {-1} (overrides not loaded).
_CHECK = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local checks = {}
local lease = {}
for i = 2, #ARGV, 5 do
  local b = #lease + 1
  lease[b] = tonumber(ARGV[i + 4])
  local spec = ARGV[i + 2]
  if ARGV[i + 3] ~= '' then
    spec = redis.call('HGET', KEYS[1], ARGV[i + 3] .. ':' .. ARGV[i]) or spec
  end
  for amount, window in string.gmatch(spec, '(%d+):(%d+)') do
    local key = ARGV[1] .. ARGV[i] .. ':' .. ARGV[i + 1] .. ':' .. window
    checks[#checks + 1] = {key, tonumber(amount), tonumber(window), amount .. ' per ' .. window .. ' second(s)',
                           b, tonumber(redis.call('GET', key) or '0')}
  end
end
for _, c in ipairs(checks) do
  if c[6] >= c[2] then
    local ttl = redis.call('PTTL', c[1])
    if ttl < 0 then ttl = c[3] * 1000 end
    return {0, math.max(1, math.ceil(ttl / 1000)), c[4]}
  end
  -- 1 % of the window's amount, never more than is left in it: never over the limit.
  lease[c[5]] = math.min(lease[c[5]], math.max(1, math.floor(c[2] / 100)), c[2] - c[6])
end
local ttl = {}
for _, c in ipairs(checks) do
  local take = lease[c[5]]
  if redis.call('INCRBY', c[1], take) == take then redis.call('PEXPIRE', c[1], c[3] * 1000) end
  local left = redis.call('PTTL', c[1])
  if ttl[c[5]] == nil or left < ttl[c[5]] then ttl[c[5]] = left end
end
local counted = {1}
for b = 1, #lease do
  if ttl[b] == nil then  -- no window: nothing counted, nothing to lease
    counted[#counted + 1] = 1
    counted[#counted + 1] = 0
  else
    counted[#counted + 1] = lease[b]
    counted[#counted + 1] = ttl[b]
  end
end
return counted
"""


@dataclass(frozen=True)
class Budget:
    scope: str
    key: str
    spec: str
    subject: str  # user id whose override may replace `spec`, or ""


def _policies_of_request() -> list[str]:
    policies = ["default"]
    if request.method == "POST" and request.blueprint in MONEY_BLUEPRINTS:
        policies.append("money")
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, request.method.lower(), None) if view_class else view
    tagged = getattr(handler, RATE_LIMIT_ATTRIBUTE, None)
    if tagged and tagged not in policies:
        policies.append(tagged)
    return policies


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
        return overrides.spec(value) if value else ""  # empty: that limit is off
    except ValueError:
        alias = Settings.model_fields[field].alias
        raise ConfigurationError(
            f"ledgerq: {alias}={value!r} is not a rate limit "
            "(write e.g. '10 per minute' or '5/second;100/hour')"
        ) from None


class MemoryCounters:
    """The script's logic in one process, for while Redis is unreachable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}  # key -> (window end, count)

    def check(self, budgets: list[Budget], specs: dict[str, str], now: float) -> tuple[int, str] | None:
        checks = []
        for budget in budgets:
            spec = (
                specs.get(f"{budget.subject}:{budget.scope}", budget.spec) if budget.subject else budget.spec
            )
            for part in filter(None, spec.split(";")):
                amount, window = (int(x) for x in part.split(":"))
                key = f"{budget.scope}:{budget.key}:{window}"
                checks.append((key, amount, window, f"{amount} per {window} second(s)"))
        with self._lock:
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
            live = {
                key: self._counts[key]
                for key, *_ in checks
                if key in self._counts and self._counts[key][0] > now
            }
            for key, amount, _, limit in checks:
                if key in live and live[key][1] >= amount:
                    return max(1, math.ceil(live[key][0] - now)), limit
            for key, _, window, _ in checks:
                ends, count = live.get(key, (now + window, 0))
                self._counts[key] = (ends, count + 1)
        return None


class Leases:
    """Requests this process may still admit without asking Redis, per budget: counted
    there already, in a window that has not ended (see the module docstring).

    One refill per budget at a time: while one request asks Redis for a budget's lease,
    the others that find none ask for themselves alone, so a burst of concurrent misses
    does not take a lease each (that would leave this process holding many leases'
    worth of a budget)."""

    MAX_ENTRIES = 100_000

    def __init__(self, lease_max: int) -> None:
        self.lease_max = lease_max
        self._lock = threading.Lock()
        self._leases: dict[tuple[str, str], list[float]] = {}  # (scope, key) -> [ends (monotonic), left]
        self._refilling: set[tuple[str, str]] = set()

    def take(self, budgets: list[Budget]) -> tuple[list[tuple[Budget, int]], list[list[float]]]:
        """Spend one leased request of every budget that has one. Returns the budgets
        without one, each with how many requests to ask Redis to count (a lease, or 1
        while another request refills it: `settle` when answered), and the leases
        spent (for `give_back`)."""
        now = time.monotonic()
        unleased, spent = [], []
        with self._lock:
            for budget in budgets:
                key = (budget.scope, budget.key)
                lease = self._leases.get(key)
                if lease is not None and lease[1] >= 1 and lease[0] > now:
                    lease[1] -= 1
                    spent.append(lease)
                elif self.lease_max > 1 and key not in self._refilling:
                    self._refilling.add(key)
                    unleased.append((budget, self.lease_max))
                else:
                    unleased.append((budget, 1))
        return unleased, spent

    def settle(self, asked: list[tuple[Budget, int]]) -> None:
        """The refills `take` handed out are over (granted, refused or failed)."""
        with self._lock:
            for budget, ask in asked:
                if ask > 1:
                    self._refilling.discard((budget.scope, budget.key))

    def give_back(self, spent: list[list[float]]) -> None:
        """A refused request uses up nothing: return what `take` spent for it (to the
        same leases, so never into a later window's)."""
        with self._lock:
            for lease in spent:
                lease[1] += 1

    def add(self, budget: Budget, left: int, ends: float) -> None:
        if left < 1:
            return
        key = (budget.scope, budget.key)
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and lease[0] > time.monotonic():
                # A lease of the same window still live (refills are one at a time, but
                # one may end between its take and its answer): keep both's requests.
                lease[0], lease[1] = min(lease[0], ends), lease[1] + left
                return
            if len(self._leases) >= self.MAX_ENTRIES:
                now = time.monotonic()
                self._leases = {k: v for k, v in self._leases.items() if v[0] > now}
            self._leases[key] = [ends, left]

    def left(self, budget: Budget) -> int:
        """Requests still leased for `budget` (0 if its lease has ended)."""
        with self._lock:
            lease = self._leases.get((budget.scope, budget.key))
            return int(lease[1]) if lease is not None and lease[0] > time.monotonic() else 0


class Limiter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.specs = {
            field: _checked(settings, field) for rules in POLICIES.values() for _, field, _ in rules
        }
        self.prefix = f"{settings.redis_namespace}:ratelimit:"
        self.overrides_key, self.loaded_key = overrides.mirror_keys(settings)
        # Never let a hung Redis hang requests: fall back to memory quickly.
        self.redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self.script = self.redis.register_script(_CHECK)
        self.memory = MemoryCounters()
        self.leases = Leases(settings.rate_limit_lease_max)
        self._redis_down_until = 0.0
        self._local_specs: tuple[float, dict[str, str]] | None = None

    def budgets(self) -> list[Budget]:
        subject = token_subject()
        found = []
        for policy in _policies_of_request():
            for scope, field, key_function in POLICIES[policy]:
                key = key_function()
                overridable = scope in overrides.SCOPES and key == f"user:{subject}"
                found.append(Budget(scope, key, self.specs[field], str(subject) if overridable else ""))
        return found

    def check(self) -> None:
        budgets = self.budgets()
        now = time.time()
        unleased, spent = self.leases.take(budgets)
        if not unleased:
            return  # every budget spent from a lease: no round trip
        try:
            refused = self._check_unleased(unleased, now)
        finally:
            self.leases.settle(unleased)
        if refused:
            self.leases.give_back(spent)
            retry_after, limit = refused
            raise RateLimited(
                f"Too many requests; retry in {retry_after} s.",
                {"limit": limit, "retry_after": retry_after},
            )

    def _check_unleased(self, unleased: list[tuple[Budget, int]], now: float) -> tuple[int, str] | None:
        refused = None
        if now >= self._redis_down_until:
            try:
                refused = self._check_redis(unleased)
            except redis.RedisError as error:
                log.warning("rate_limit.redis_unavailable", error=str(error)[:200])
                self._redis_down_until = now + REDIS_RETRY_S
        if now < self._redis_down_until:
            budgets = [budget for budget, _ in unleased]
            refused = self.memory.check(budgets, self._specs_from_db(now), now)
        return refused

    def _check_redis(self, unleased: list[tuple[Budget, int]]) -> tuple[int, str] | None:
        args: list[str | int] = [self.prefix]
        for budget, ask in unleased:
            args += [budget.scope, budget.key, budget.spec, budget.subject, ask]
        asked = time.monotonic()  # before the script reads the windows' ends: leases end no later
        result = self.script(keys=[self.overrides_key, self.loaded_key], args=args)
        if result[0] == -1:
            self.reload_overrides()
            asked = time.monotonic()
            result = self.script(keys=[self.overrides_key, self.loaded_key], args=args)
        if result[0] == 0:
            return int(result[1]), result[2].decode()
        for (budget, _), counted, ttl_ms in zip(unleased, result[1::2], result[2::2], strict=True):
            self.leases.add(budget, int(counted) - 1, asked + int(ttl_ms) / 1000)
        return None

    def _specs_from_db(self, now: float) -> dict[str, str]:
        if self._local_specs is None or self._local_specs[0] < now:
            self._local_specs = (now + OVERRIDES_RELOAD_S, self._load_specs())
        return self._local_specs[1]

    def _load_specs(self) -> dict[str, str]:
        with session_factory(self.settings)() as session:
            return overrides.all_specs(session)

    def reload_overrides(self) -> None:
        """Mirror the overrides table into Redis (every process does this when the
        marker is missing: after a change, a Redis restart, or every OVERRIDES_RELOAD_S)."""
        specs: dict[Any, Any] = self._load_specs()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.overrides_key)
        if specs:
            pipe.hset(self.overrides_key, mapping=specs)
        pipe.set(self.loaded_key, "1", ex=OVERRIDES_RELOAD_S)
        pipe.execute()


class LoginFailures:
    """Failed logins per resolved account: per (account, client IP) and per account over
    every address (fixed windows, one Redis round trip each way). Checked before the
    password, counted only when it was wrong. While Redis is unreachable the counts live
    in this process (as the request budgets' MemoryCounters do): the limit still holds
    per process, and the API keeps serving."""

    def __init__(self, settings: Settings, limiter: Limiter) -> None:
        self.enabled = settings.rate_limit_enabled
        self.redis = limiter.redis
        self.prefix = f"{limiter.prefix}login-failures:"
        self.limits = [
            ([tuple(int(x) for x in part.split(":")) for part in filter(None, spec.split(";"))], per_ip)
            for spec, per_ip in (
                (_checked(settings, "rate_limit_auth_per_login"), True),
                (_checked(settings, "rate_limit_auth_failures_per_account"), False),
            )
        ]
        self._lock = threading.Lock()
        self._memory: dict[str, tuple[float, int]] = {}  # key -> (window end, failures)

    def _keys(self, account: str) -> list[tuple[str, int, int]]:
        found = []
        for windows, per_ip in self.limits:
            address = client_ip() if per_ip else "*"
            for amount, window in windows:
                found.append((f"{self.prefix}{account}:{address}:{window}", amount, window))
        return found

    def _counts(self, keys: list[tuple[str, int, int]]) -> list[tuple[int, float]]:
        """(failures, seconds until the window ends) per key, from Redis or this process."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key, _, _ in keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = pipe.execute()
            return [
                (
                    int(replies[2 * i] or 0),
                    (replies[2 * i + 1] or 0) / 1000 if (replies[2 * i + 1] or 0) > 0 else window,
                )
                for i, (_, _, window) in enumerate(keys)
            ]
        except redis.RedisError:
            now = time.time()
            with self._lock:
                live = [self._memory.get(key, (0.0, 0)) for key, _, _ in keys]
            return [
                (count, ends - now) if ends > now else (0, window)
                for (ends, count), (_, _, window) in zip(live, keys, strict=True)
            ]

    def refuse_if_exhausted(self, account: str) -> None:
        if not self.enabled:
            return
        keys = self._keys(account)
        for (count, remaining), (_, amount, _) in zip(self._counts(keys), keys, strict=True):
            if count >= amount:
                retry_after = max(1, math.ceil(remaining))
                raise RateLimited(
                    f"Too many failed logins; retry in {retry_after} s.", {"retry_after": retry_after}
                )

    def record_failure(self, account: str) -> None:
        if not self.enabled:
            return
        keys = self._keys(account)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key, _, window in keys:
                pipe.incr(key)
                pipe.expire(key, window, nx=True)
            pipe.execute()
        except redis.RedisError:
            now = time.time()
            with self._lock:
                for key, _, window in keys:
                    ends, count = self._memory.get(key, (0.0, 0))
                    self._memory[key] = (ends, count + 1) if ends > now else (now + window, 1)


def init_app(app: Flask, settings: Settings) -> None:
    limiter = Limiter(settings)
    app.extensions[EXTENSION_KEY] = limiter
    app.extensions["ledgerq_login_failures"] = LoginFailures(settings, limiter)
    if not settings.rate_limit_enabled:
        return

    @app.before_request
    def _rate_limit() -> None:
        if not _not_rate_limited():
            limiter.check()
