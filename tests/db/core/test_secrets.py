"""Secrets: a weak JWT_SECRET stops the process outside development, and no token,
password or secret ever reaches a log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import jwt as pyjwt
import pytest
from pydantic import ValidationError

from db.core.config import Settings, get_settings
from tests.fixtures.http import app_with, bearer, login, refresh

STRONG = "kQ3v-9xZp_Lm2Rt8Wn4Yb7Hc1Jd6Fg0Se5Ua"
# The secret db/core/config.py used to publish as the development default.
PUBLISHED = "dev-only-insecure-secret-change-me-0123456789"


@pytest.mark.parametrize("env", ["production", "staging", "development", "test"])
@pytest.mark.parametrize("secret", ["short-secret", "x" * 31, "a" * 32, "ab" * 24, "0123456789" * 4])
def test_weak_jwt_secret_is_refused_in_every_environment(env, secret):
    with pytest.raises(ValidationError, match="JWT_SECRET must be a random value"):
        Settings(LEDGERQ_ENV=env, JWT_SECRET=secret)


def test_the_default_environment_is_production(monkeypatch, tmp_path):
    monkeypatch.delenv("LEDGERQ_ENV")
    monkeypatch.chdir(tmp_path)
    assert Settings(JWT_SECRET=STRONG).env == "production"


def test_without_a_secret_production_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.delenv("LEDGERQ_ENV")
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
        Settings()
    assert not (tmp_path / ".ledgerq").exists()


def test_development_generates_a_per_install_secret_under_ledgerq(monkeypatch, tmp_path):
    monkeypatch.delenv("JWT_SECRET")
    first, second = tmp_path / "one", tmp_path / "two"
    secrets = []
    for install in (first, second, first):
        install.mkdir(exist_ok=True)
        monkeypatch.chdir(install)
        secrets.append(Settings(LEDGERQ_ENV="development").jwt_secret)
    assert secrets[0] == secrets[2], "an install keeps its secret across restarts"
    assert secrets[0] != secrets[1], "each install has its own"
    assert PUBLISHED not in secrets and len(secrets[0]) >= 43
    stored = first / ".ledgerq" / "jwt-secret"
    assert stored.read_text().strip() == secrets[0]
    assert stored.stat().st_mode & 0o077 == 0, "readable by its owner only"


def test_a_token_signed_with_the_published_secret_is_refused(monkeypatch, tmp_path):
    """The review forged an admin token with the secret printed in the source and read
    GET /users with it, on a process started without LEDGERQ_ENV."""
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.chdir(tmp_path)
    settings = Settings(LEDGERQ_ENV="development")
    forged = pyjwt.encode(
        {
            "sub": "1",
            "role": "admin",
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "exp": 4102444800,
            "iat": 1700000000,
            "type": "access",
        },
        PUBLISHED,
        algorithm="HS256",
    )
    app = app_with(jwt_secret=settings.jwt_secret)
    response = app.test_client().get("/api/v1/users", headers=bearer(forged))
    assert response.status_code == 401


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
    assert "JWT_SECRET must be a random value of at least 32 bytes" in result.stderr
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
        json={"username": "newbie", "email": "newbie@example.com", "password": "quiet evening walk!"},
    )
    assert registered.status_code == 201
    secrets.append("quiet evening walk!")
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
