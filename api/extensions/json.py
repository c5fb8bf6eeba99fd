"""orjson as Flask's JSON provider (responses, request bodies, flask-smorest's jsonify).

Measured (README, Performance): serialising a page of 50 transactions takes about a
tenth of the time of the standard library's encoder; parsing is faster too. Decimal is
never a float: it is written as its exact string, as Flask's default provider does.
NaN/Infinity and integers beyond 64 bits in a request body are refused by orjson (400
`invalid_json`), which no amount field accepts anyway.
"""

from __future__ import annotations

import dataclasses
import decimal
from typing import Any

import orjson
from flask.json.provider import JSONProvider

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__html__"):
        return str(value.__html__())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class OrjsonProvider(JSONProvider):
    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=_default, option=_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        response_class: Any = self._app.response_class  # flask.Response here, not sansio's
        return response_class(orjson.dumps(obj, default=_default, option=_OPTIONS), mimetype=self.mimetype)
