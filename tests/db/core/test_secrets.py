"""Secrets: a weak JWT_SECRET stops the process outside development, and no token,
password or secret ever reaches a log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from db.core.config import DEV_JWT_SECRET, Settings, get_settings
from tests.fixtures.http import app_with, bearer, login, refresh

STRONG = "s" * 32


@pytest.mark.parametrize("env", ["production", "staging"])
@pytest.mark.parametrize("secret", [DEV_JWT_SECRET, "short-secret", "x" * 31])
def test_weak_jwt_secret_is_refused_outside_development(env, secret):
    with pytest.raises(
        ValidationError, match="JWT_SECRET must be set to a random value of at least 32 bytes"
    ):
        Settings(LEDGERQ_ENV=env, JWT_SECRET=secret)


@pytest.mark.parametrize("env", ["development", "test"])
def test_development_and_test_may_use_the_built_in_secret(env):
    assert Settings(LEDGERQ_ENV=env, JWT_SECRET=DEV_JWT_SECRET).jwt_secret == DEV_JWT_SECRET


def test_strong_secret_is_accepted_in_production():
    assert Settings(LEDGERQ_ENV="production", JWT_SECRET=STRONG).env == "production"


def test_process_refuses_to_start_with_a_clear_message():
    weak = "my-weak-but-private-secret"
    environment = {**os.environ, "LEDGERQ_ENV": "production", "JWT_SECRET": weak}
    result = subprocess.run(
        [sys.executable, "-c", "from api import create_app; create_app()"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "refusing to start" in result.stderr
    assert (
        "JWT_SECRET must be set to a random value of at least 32 bytes when LEDGERQ_ENV=production"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert weak not in result.stderr + result.stdout


def test_no_secret_reaches_the_logs(make, caplog, capfd):
    admin, alice = make.user("admin"), make.user()
    app = app_with(log_level="DEBUG")
    root = logging.getLogger()
    root.addHandler(caplog.handler)  # create_app() replaced the root handlers
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    secrets = [get_settings().jwt_secret, alice.password, "a brand new secret!", "typo password!!"]

    registered = client.post(
        "/api/v1/auth/register",
        json={"username": "newbie", "email": "newbie@example.com", "password": "newbie's password"},
    )
    assert registered.status_code == 201
    secrets.append("newbie's password")
    client.post("/api/v1/auth/login", json={"username": alice.username, "password": "typo password!!"})
    first = login(client, alice.username)
    second = refresh(client, first["refresh_token"]).json
    assert refresh(client, first["refresh_token"]).status_code == 401  # reuse: logged as a warning
    third = login(client, alice.username)
    client.post("/api/v1/auth/logout", json={"refresh_token": third["refresh_token"]})
    client.put(
        f"/api/v1/users/{alice.id}",
        json={"password": "a brand new secret!", "current_password": alice.password},
        headers=bearer(third["access_token"]),
    )
    client.get("/api/v1/auth/me", headers=admin.headers)
    for pair in (first, second, third):
        secrets += [pair["access_token"], pair["refresh_token"]]
    secrets.append(admin.headers["Authorization"].removeprefix("Bearer "))

    root.removeHandler(caplog.handler)
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "auth.refresh_reuse_detected" in logs and "http.request" in logs, "the logs were not captured"
    leaked = [secret[:12] + "..." for secret in secrets if secret in logs]
    assert not leaked, f"secrets in the logs: {leaked}"
