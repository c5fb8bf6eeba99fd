"""Helpers for API tests about auth: log in, build apps with settings of their own."""

from __future__ import annotations

from flask import Flask

from db.core.config import get_settings


def app_with(**overrides) -> Flask:
    """A fresh app whose settings differ from the suite's (tight rate limits, caps...)."""
    from api import create_app

    app = create_app(get_settings().model_copy(update=overrides))
    app.config["TESTING"] = True
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client, username: str, password: str = "correct horse battery") -> dict:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    return response.json


def refresh(client, refresh_token: str):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def audit_actions(entity_id) -> list[tuple[str, dict]]:
    from sqlalchemy import select

    from db.models import AuditLog
    from db.session import unit_of_work

    with unit_of_work() as uow:
        rows = uow.session.execute(
            select(AuditLog.action, AuditLog.data)
            .where(AuditLog.entity_id == str(entity_id))
            .order_by(AuditLog.id)
        ).all()
    return [(action, data) for action, data in rows]
