"""The auth schema: models and migrations agree, and the database enforces the rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import exc

from db.core.config import get_settings
from db.migrate import alembic_config
from db.models import RefreshToken
from db.session import unit_of_work


def test_models_match_the_migrations():
    command.check(alembic_config(get_settings().database_url))  # raises on any drift


@pytest.mark.parametrize("reason", [None, "because"], ids=["revoked without a reason", "unknown reason"])
def test_revoked_refresh_tokens_need_a_known_reason(make, reason):
    alice = make.user()
    with pytest.raises(exc.IntegrityError), unit_of_work() as uow:
        uow.session.add(
            RefreshToken(
                user_id=alice.id,
                family_id=uuid.uuid4(),
                token_hash="0" * 64,
                expires_at=datetime.now(UTC) + timedelta(days=1),
                revoked_at=datetime.now(UTC),
                revoked_reason=reason,
            )
        )
