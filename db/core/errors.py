"""Domain errors: each carries the HTTP status and the stable `code` of shared/API.md.

Services raise them; the API renders them in the one error envelope. Business outcomes
decided by the worker are *not* errors (they are a `failed` status with a failure code).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class InvalidJson(DomainError):
    status, code = 400, "invalid_json"


class Unauthorized(DomainError):
    status, code = 401, "unauthorized"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class RateChanged(DomainError):
    """An exchange quoted a `rate` that is no longer the pair's current one: the client
    re-reads the rate (details carry it) and decides again; nothing was recorded."""

    status, code = 409, "rate_changed"


class IdempotencyKeyInUse(DomainError):
    status, code = 409, "idempotency_key_in_use"


class PayloadTooLarge(DomainError):
    status, code = 413, "payload_too_large"


class ValidationFailed(DomainError):
    """Field errors: `details` maps field -> list of messages."""

    status, code = 422, "validation_error"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls("The request has invalid fields.", {name: [message]})


class RuleViolation(DomainError):
    """A business rule checkable at request time (currency_mismatch, same_account,
    account_inactive, limit_exceeded)."""

    status = 422


class IdempotencyKeyReused(DomainError):
    status, code = 422, "idempotency_key_reused"


class RateLimited(DomainError):
    status, code = 429, "rate_limited"


class Unavailable(DomainError):
    status, code = 503, "unavailable"
