"""Refuse, before any view runs, input no field of the API can hold: JSON nested deeper
than MAX_JSON_DEPTH, JSON objects with a duplicate key, and NUL characters in any JSON
string or key, query parameter or path. PostgreSQL text cannot store NUL, and deep JSON
made Python's JSON encoder (and decoder) recurse past its limit: both were 500s.

Duplicate keys: json.loads keeps the last, so `{"amount": "1", "amount": "1000"}`
would mean whatever the last parser along the way decided; we refuse the ambiguity."""

from __future__ import annotations

import json

from flask import Flask, current_app, request

from db.core.errors import InvalidJson, ValidationFailed

# Deepest nesting any request of the API needs is 3 (batch items in a list in an
# object); metadata may nest a little. 32 leaves room without a recursion risk.
MAX_JSON_DEPTH = 32
_NUL = "\x00"
_NUL_MESSAGE = "must not contain NUL characters"


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise InvalidJson("The request body repeats a key.", {"duplicate_key": duplicate.replace(_NUL, "")})
    return dict(pairs)


def check_json_value(value: object) -> None:
    """Depth and NUL checks, iteratively (recursion is what this guards against)."""
    stack: list[tuple[object, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict | list) and depth > MAX_JSON_DEPTH:
            raise InvalidJson(f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.")
        if isinstance(node, dict):
            for key, child in node.items():
                where = f"{path}.{key}" if path else key
                if _NUL in key:
                    raise ValidationFailed.field(where.replace(_NUL, "\\u0000"), _NUL_MESSAGE)
                stack.append((child, depth + 1, where))
        elif isinstance(node, list):
            stack.extend((child, depth + 1, f"{path}.{index}") for index, child in enumerate(node))
        elif isinstance(node, str) and _NUL in node:
            raise ValidationFailed.field(path or "json", _NUL_MESSAGE)


def parse_checked_json(data: bytes | str) -> object:
    """json.loads that refuses what check_json_value refuses, and duplicate keys."""
    try:
        value = json.loads(data, object_pairs_hook=_reject_duplicates)
    except RecursionError:
        raise InvalidJson(f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError: webargs answers those
        return None
    check_json_value(value)
    return value


def init_app(app: Flask) -> None:
    @app.before_request
    def _refuse_unstorable_input():
        for name, values in request.args.lists():
            if _NUL in name or any(_NUL in value for value in values):
                raise ValidationFailed.field(name.replace(_NUL, "\\u0000"), _NUL_MESSAGE)
        if _NUL in request.path:
            raise ValidationFailed.field("path", _NUL_MESSAGE)
        # Bodies over the app-wide limit are the business of the one view that accepts
        # them (JSON batches), which parses them with parse_checked_json itself.
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if request.is_json and not (limit and (request.content_length or 0) > limit):
            parse_checked_json(request.get_data(cache=True))
