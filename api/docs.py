"""Prose of the OpenAPI document: the money rules and every stable code a client can see.
deployment/MONEY_RULES.md says the same for operators; keep them in step."""

from __future__ import annotations

TRANSACTION_422 = (
    "`validation_error` (fields: amount format or decimals, unknown currency, ...), "
    "`currency_mismatch`, `same_account`, `account_inactive`, `limit_exceeded`, "
    "`idempotency_key_reused`"
)
EXCHANGE_409 = (
    "`rate_changed`: the `rate` sent is no longer the pair's current one (details: `rate`, "
    "`fee_bps`, `quoted`); nothing was recorded. `idempotency_key_in_use`"
)
EXCHANGE_422 = (
    "`validation_error` (no rate for the pair; `to_amount` would be 0 or above the maximum; "
    "amount or rate format), `currency_mismatch` (`currency` is not the source's, or the target "
    "holds the same currency), `same_account`, `account_inactive`, `limit_exceeded`, "
    "`idempotency_key_reused`"
)
STATUS_CHANGE_409 = (
    "`conflict`: not allowed from the current status, a non-zero balance on close, or a system account"
)
LIMITS_409 = "`conflict`: the balance is already below the new overdraft floor, or a system or closed account"
LIMITS_422 = (
    "`validation_error`, or `overdraft_cap_exceeded`: the overdraft is above LEDGERQ_MAX_OVERDRAFT "
    "(details: `overdraft_limit`, `max_overdraft`)"
)

DESCRIPTION = """
Queue-centric money transfers on a double-entry ledger. A `POST /transactions/*` answers
**202** with a durable `pending` transaction; a worker decides it (`completed` or `failed`).

## Money

* **Amounts are decimal strings** (`"150.75"`) with an ISO 4217 `currency`: digits with an
  optional fraction, at most as many decimals as the currency has (JPY 0, USD 2, BHD/KWD 3,
  CLF 4). More decimals are a 422, never rounded; JSON numbers are a 422.
* **Storage: BIGINT minor units.** Every amount and balance is an integer count of the
  currency's minor unit (cents, fils, ...). Integer arithmetic is exact in PostgreSQL and
  Python; no float ever touches an amount. Responses render exactly the currency's decimals
  (`"100.00"`, `"500"` JPY, `"1.500"` BHD).
* **Currencies**: the active ISO 4217 codes with a minor unit. An unknown or withdrawn code
  is a 422 `validation_error` on `currency`. Accounts hold one currency; a transaction whose
  currency differs from either account is a 422 `currency_mismatch`.

## Rules and their codes

A rule broken at request time is a **4xx with an error `code`**; a rule that only the worker
can decide (it holds the account row locks) makes the transaction **`failed` with a
`failure_code`**. The worker re-checks everything, so a rule the API let through because
of a race still holds.

| rule | request time (HTTP, `code`) | apply time (`failure_code`) |
|---|---|---|
| account frozen or closed (either side) | 422 `account_inactive` | `account_inactive` |
| currency differs from an account | 422 `currency_mismatch` | `currency_mismatch` |
| over a limit (below) | 422 `limit_exceeded` | `limit_exceeded` |
| balance would go below `-overdraft_limit` | - | `insufficient_funds` |
| a balance would leave the BIGINT range of minor units | - | `amount_out_of_range` |
| from and to are the same account | 422 `same_account` | - |
| bad amount / unknown currency | 422 `validation_error` | - |

`failure_code` is one of `account_inactive`, `currency_mismatch`, `limit_exceeded`,
`insufficient_funds`, `amount_out_of_range`, checked in that order. `error.details` of a `limit_exceeded` names the
`limit`, its `limit_value` and what was already `used`.

## Limits

On money **leaving a user account** by transfer or debit (credits and reversals are not
limited): `max_per_transaction`; `daily_outgoing_limit` (completed + pending per UTC
calendar day); `per_minute_outgoing_count` (transfers in any rolling 60 s). Each is the
account's override (`PUT|PATCH /accounts/{id}/limits`, finance/admin) or the configured
default (`LEDGERQ_DEFAULT_*`; unset = unlimited). The worker checks them against what the
account completed, while holding its row lock: concurrent requests cannot jointly exceed one.

## Accounts

`status` is `active`, `frozen` (no money in or out; pending transfers touching it fail
`account_inactive`) or `closed` (only from a zero balance, irreversible).
`POST /accounts/{id}/freeze|unfreeze|close` (finance/admin, optional `{"reason"}`, audited).
`overdraft_limit` (default 0) lets a balance go down to its negative; the system `external`
accounts are unlimited. `available_balance` = balance minus pending outgoing amounts.

## Exchange (FX) and fees

`PUT /fx/rates/{base}/{quote}` `{rate, fee_bps?}` (finance/admin): 1 `base` buys `rate`
`quote`; `rate` a positive decimal string of at most 12 significant digits (below 10^12, at
most 18 decimals), `fee_bps` an integer 0-9999 (default 0). Pairs are directional (EUR/USD
is its own rate, never the inverse of USD/EUR). Every change is a new version, audited
(`fx.rate_set`); `GET /fx/rates/{base}/{quote}/history` lists them. Rates are stored exactly
(NUMERIC), never as floats.

`POST /transactions/exchange` fixes the current rate and fee at request time:
`fee = amount x fee_bps / 10000` and `to_amount = (amount - fee) x rate`, each **rounded
toward zero** to its currency's decimals, in exact integer arithmetic. The transaction shows
`to_amount`, `to_currency`, `rate`, `fee` and `rate_version`. No rate for the pair, or a
`to_amount` of 0: 422 `validation_error`; a `rate` sent that is no longer current: **409
`rate_changed`**. Limits apply to `amount`. The worker posts it atomically: the source pays
`amount`, split between the source currency's `fx` system account (amount - fee) and its
`fees` account (the fee); the target currency's `fx` account pays `to_amount` to the target.
Every currency still sums to zero. Reversing an exchange moves the very same amounts back at
the original rate, the fee refunded.

## Rate limits and long-polls

Per user (per client IP without a valid token), fixed windows: every `/api/v1` request
draws on a request budget (default `1200 per minute`), every money-moving POST
(`/transactions/*`, `/batches`) also on a money budget (default `300 per minute`); login,
register and refresh have per-IP and per-login budgets. Over a budget: **429
`rate_limited`** with `Retry-After` (seconds) and `details.limit`. An admin can give one
user (a service user for an integration) budgets of its own:
`PUT /users/{id}/rate-limits` `{"requests": "6000 per minute", "money": "3000 per minute",
"reason": "..."}` (audited; `DELETE` returns to the defaults), effective on the next request.

`GET /transactions/{id}?wait=N` (N ≤ 30 s) answers as soon as the transaction is final
(woken by the commit, typically within milliseconds) or after N seconds with the current
state. A user may have at most 10 such waits open at once (`LEDGERQ_LONG_POLLS_PER_USER`);
above that, 429 `rate_limited`.

## Events and webhooks

Every state change worth telling (a transaction created, completed, failed, cancelled,
dead-lettered or reversed; a batch finished; an account frozen, unfrozen or closed) writes
an event `{id, type, created_at, data}` **in the same database transaction** as the
change; `data` is the resource as GET renders it then. `GET /events?after=` lists them in
a stable order that never skips, also while many transactions commit concurrently:
`next_cursor` is always set, so polling with the last one sees every event exactly once.
Customers see their own accounts' events; finance and admin all. Kept at least 30 days.

`POST /webhooks` subscribes a URL (https, public addresses only) and returns its signing
`secret` once. Deliveries are `POST url` with the event and `Ledgerq-Signature:
t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` (verify with
`ledgerq.webhooks.verify_signature`); a 2xx within 10 s is delivered, anything else is
retried with exponential backoff and jitter (first retry within a minute) for at least
24 h, then `failed` (listed, retryable). At least once, in no guaranteed order:
deduplicate by event id. A failing endpoint is paused by a circuit breaker and probed;
it never delays other endpoints.

## Analytics

`GET /analytics/daily?from&to&currency` (finance, admin): per UTC day of a transaction's
creation and currency, `count` created, how many are `completed` and `failed` now, and
`volume`, the sum of the completed amounts (a transaction completed a day later still
counts on its creation day). `GET /analytics/accounts/{id}?from&to` (owner, finance,
admin): the completed amounts into and out of the account on those UTC days of its
ledger entries. `from`/`to` are dates (`YYYY-MM-DD`), inclusive, at most 366 days apart
(default: the 30 days up to today); otherwise, or for an unknown currency, 422
`validation_error`. Both read rollups the
database keeps in the same transaction as every change: exact, and a call's cost depends
on the days it asks for, not on how many transactions there are.
"""
