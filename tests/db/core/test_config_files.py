"""`<VARIABLE>_FILE`: settings read from files (Docker/Kubernetes secrets, the compose
stack's generated secrets)."""

from __future__ import annotations

import pytest

from db.core.config import ConfigurationError, Settings

STRONG = "kQ3v-9xZp_Lm2Rt8Wn4Yb7Hc1Jd6Fg0Se5Ua"


def test_a_variable_can_come_from_a_file(tmp_path, monkeypatch):
    secret = tmp_path / "jwt"
    secret.write_text(STRONG + "\n")
    monkeypatch.setenv("JWT_SECRET_FILE", str(secret))
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("LEDGERQ_ENV", "production")
    assert Settings().jwt_secret == STRONG  # trailing newline stripped, production accepts it


def test_the_variable_itself_wins_over_its_file(tmp_path, monkeypatch):
    url = tmp_path / "url"
    url.write_text("postgresql://from-file@db/ledgerq")
    monkeypatch.setenv("DATABASE_URL_FILE", str(url))
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env@db/ledgerq")
    assert Settings().database_url == "postgresql+psycopg://from-env@db/ledgerq"
    monkeypatch.delenv("DATABASE_URL")
    assert Settings().database_url == "postgresql+psycopg://from-file@db/ledgerq"


def test_an_unreadable_file_refuses_to_start_and_says_which(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERQ_METRICS_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="LEDGERQ_METRICS_TOKEN_FILE: cannot read"):
        Settings()
