"""db/core/jwt_codec.py: a token verified once is answered from the process's cache, and
the cache never answers for a token the full check would refuse now."""

from __future__ import annotations

import uuid

import pytest

from db.core import jwt_codec
from db.core.config import get_settings
from db.core.errors import Unauthorized


def test_a_cached_token_stops_working_when_it_expires(monkeypatch):
    settings = get_settings()
    token = jwt_codec.encode(settings, typ="access", subject=uuid.uuid4(), ttl_s=60)
    claims = jwt_codec.decode(settings, token, "access")
    assert jwt_codec.decode(settings, token, "access") == claims  # now from the cache

    later = claims["exp"] + 1
    monkeypatch.setattr(jwt_codec.time, "time", lambda: later)
    monkeypatch.setattr(jwt_codec.jwt.api_jwt, "datetime", _frozen_at(later))
    with pytest.raises(Unauthorized):
        jwt_codec.decode(settings, token, "access")


def test_the_cache_answers_only_for_the_same_type_secret_and_audience():
    settings = get_settings()
    token = jwt_codec.encode(settings, typ="access", subject=uuid.uuid4(), ttl_s=60)
    jwt_codec.decode(settings, token, "access")
    with pytest.raises(Unauthorized):
        jwt_codec.decode(settings, token, "refresh")
    other_secret = settings.model_copy(update={"jwt_secret": settings.jwt_secret + "-rotated"})
    with pytest.raises(Unauthorized):
        jwt_codec.decode(other_secret, token, "access")
    other_audience = settings.model_copy(update={"jwt_audience": "someone-else"})
    with pytest.raises(Unauthorized):
        jwt_codec.decode(other_audience, token, "access")


def test_a_returned_claims_dict_is_the_callers_own():
    settings = get_settings()
    token = jwt_codec.encode(settings, typ="access", subject=uuid.uuid4(), ttl_s=60)
    jwt_codec.decode(settings, token, "access")["sub"] = "tampered"
    assert jwt_codec.decode(settings, token, "access")["sub"] != "tampered"


def _frozen_at(timestamp: float):
    """PyJWT's `datetime`, with now() at `timestamp`."""
    from datetime import UTC, datetime

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(timestamp, tz or UTC)

    return Frozen
