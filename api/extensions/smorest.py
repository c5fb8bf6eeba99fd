"""The project's flask-smorest `Api` and `Blueprint`: cross-cutting policy lives here
once: the error envelope for every HTTPException, the Bearer security scheme,
`login_required` which both enforces auth/roles and documents 401/403/429, and
`rate_limit` which tags a view with a rate-limit policy (api/extensions/rate_limit.py),
`keyset_page` which every list endpoint's pagination goes through (its `KeysetPage`
lives in db/pagination.py), and `idempotent` for every endpoint that creates money
movement (the replay itself: db/idempotency.py)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import current_app, jsonify, request
from webargs.flaskparser import FlaskParser

from api.extensions.schemas import ErrorEnvelopeSchema
from db.core.errors import ValidationFailed
from db.idempotency import REPLAY_HEADER
from db.pagination import KeysetPage, decode_cursor

RATE_LIMIT_ATTRIBUTE = "_ledgerq_rate_limit_policy"
_RATE_LIMITED_DOC = "rate_limited: too many requests; retry after the `Retry-After` header's seconds"

# webargs/flask-smorest put field errors under their location ("json", "query", ...).
_STATUS_CODES = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "invalid_json",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, details: dict | None = None, headers=None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _flatten_locations(errors: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for location, fields in errors.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


class Api(flask_smorest.Api):
    # The documented error responses (422 of @arguments, `default`) are the real envelope,
    # not flask-smorest's `{code, status, errors}`.
    ERROR_SCHEMA = ErrorEnvelopeSchema

    def _init_spec(self, *, extra_plugins=None, **options):
        from api.extensions.openapi import ConventionsPlugin

        super()._init_spec(extra_plugins=[*(extra_plugins or ()), ConventionsPlugin()], **options)

    def _register_responses(self):
        super()._register_responses()
        # flask-smorest registers it lazily: replace its generic description before first use.
        default = self.spec.components.responses_lazy[self.DEFAULT_ERROR_RESPONSE_NAME]
        default["description"] = (
            "Any other error, in the one error envelope with a stable `code` "
            "(for example 500 `internal_error`; never a stack trace)."
        )

    def handle_http_exception(self, error):
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        if status == 400 and messages and "json" in messages:
            return error_response(400, "invalid_json", "The request body is not valid JSON.")
        if status == 422 and messages:
            return error_response(
                422, "validation_error", "The request has invalid fields.", _flatten_locations(messages)
            )
        if status >= 500:
            return error_response(status, "internal_error", "Internal server error.")
        code = _STATUS_CODES.get(status, "error")
        message = data.get("message") or error.description or error.name
        return error_response(status, code, message, headers=data.get("headers"))


class _SchemaReusingParser(FlaskParser):
    """webargs builds a schema per request from a schema class (`@blp.arguments(Cls)`):
    `Schema.__init__` deep-copies its declared fields, 3 % of an accepted transfer's CPU
    (py-spy, in-process). Loading keeps no state on the instance (`unknown` and
    `partial` are arguments of `load`), so one instance per class serves every request
    and thread."""

    def __init__(self) -> None:
        super().__init__()
        self._schemas: dict[type[ma.Schema], ma.Schema] = {}

    def _get_schema(self, argmap: Any, req: Any) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas.setdefault(argmap, argmap())
            return schema
        return super()._get_schema(argmap, req)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _SchemaReusingParser()

    def login_required(self, *roles: str) -> Callable:
        """Require a valid access token (and one of `roles`, if given); document it."""

        def decorator(view: Callable) -> Callable:
            from api.extensions.auth import require_principal

            @functools.wraps(view)
            def wrapper(*args, **kwargs):
                require_principal(roles)
                return view(*args, **kwargs)

            wrapper = self.doc(security=[{"bearerAuth": []}])(wrapper)
            wrapper = self.alt_response(
                401, schema=ErrorEnvelopeSchema, description="Missing, invalid, expired or revoked token"
            )(wrapper)
            wrapper = self.alt_response(
                403,
                schema=ErrorEnvelopeSchema,
                description=f"Only {', '.join(roles)} may do this" if roles else "Not allowed for your role",
            )(wrapper)
            # Every authenticated request counts against the caller's default rate limit.
            return self.alt_response(429, schema=ErrorEnvelopeSchema, description=_RATE_LIMITED_DOC)(wrapper)

        return decorator

    def rate_limit(self, policy: str) -> Callable:
        """Apply the named rate-limit policy (see `api.extensions.rate_limit.POLICIES`) on
        top of the default one, and document the 429."""

        def decorator(view: Callable) -> Callable:
            setattr(view, RATE_LIMIT_ATTRIBUTE, policy)  # carried outward by functools.wraps
            return self.alt_response(429, schema=ErrorEnvelopeSchema, description=_RATE_LIMITED_DOC)(view)

        return decorator

    def reads_from_replica(self) -> Callable:
        """Serve this read from DATABASE_READ_URL (a streaming replica) when one is set.

        Only for heavy reads whose client can live with the replication delay (history,
        historical balances, entries, the audit log). Put it innermost (just above the
        view): authentication, outside it, keeps reading the primary, so a revoked token
        or a new user is never judged from a lagging copy."""

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def wrapper(*args, **kwargs):
                from flask import g

                g.reads_from_replica = True
                return view(*args, **kwargs)

            return wrapper

        return decorator

    def documents_errors(self, *statuses: int, codes: dict[int, str] | None = None) -> Callable:
        """Document the error responses an operation can produce, in the one envelope.

        `codes` describes a status whose `code` can be more than the default one (a 422
        that may be `limit_exceeded` as well as `validation_error`)."""

        def decorator(view: Callable) -> Callable:
            for status in statuses:
                description = (codes or {}).get(status) or _STATUS_CODES.get(status, "")
                view = self.alt_response(status, schema=ErrorEnvelopeSchema, description=description)(view)
            return view

        return decorator

    def keyset_page(self, position: Callable[[Any], object], cursor: Callable[[str], Any] = int) -> Callable:
        """Give the view a `page: KeysetPage` keyword: the query's `limit` capped at
        LEDGERQ_PAGE_SIZE_MAX and its `cursor` decoded by `cursor` (int, uuid.UUID).
        The view passes `page.after`/`page.limit` to its repository and returns
        `page.of(rows)`. Goes directly under the `@blp.arguments(..., location="query")`
        whose schema has `cursor` and `limit` (api/extensions/schemas.py): that parsed
        dict is the view's last positional argument."""

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def wrapper(*args, **kwargs):
                query = args[-1]
                kwargs["page"] = KeysetPage(
                    limit=min(query["limit"], current_app.config["LEDGERQ_SETTINGS"].page_size_max),
                    after=decode_cursor(query["cursor"], cursor),
                    position_of=position,
                )
                return view(*args, **kwargs)

            return wrapper

        return decorator

    def idempotent(self, view: Callable) -> Callable:
        """An endpoint that creates money movement: the view gets `idempotency_key` (the
        validated `Idempotency-Key` header, or None) and returns `(body, submitted,
        location)` (`submitted`: db/idempotency.py's `Submitted`); the answer is 202 with
        `Location`, plus `Idempotent-Replayed: true` on a replay. Documents the header.
        Goes directly above the view function (under `@blp.response`, which serializes
        what this returns)."""

        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            kwargs["idempotency_key"] = idempotency_key()
            result = view(*args, **kwargs)
            if not isinstance(result, tuple):  # a response of its own (e.g. a dry run's report)
                return result
            body, submitted, location = result
            headers = {"Location": location}
            if submitted.replayed:
                headers[REPLAY_HEADER] = "true"
            return body, 202, headers

        return self.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])(wrapper)


IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Same key + same body replays the original 202 (header Idempotent-Replayed: true); "
    "same key + different body is 422 idempotency_key_reused. Scoped to the user, kept >= 30 days.",
}
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


def idempotency_key() -> str | None:
    """The request's `Idempotency-Key` header, validated (422 on a malformed key)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed.field("Idempotency-Key", "must be 1-255 printable characters without spaces")
    return key
