"""The `ledgerq` command itself: --version, -h, and how `users create` takes a password."""

from __future__ import annotations

import uuid
from importlib.metadata import version

from click.testing import CliRunner

from api.cli import main
from tests.fixtures.http import login


def test_version_and_short_help():
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output == f"ledgerq {version('ledgerq')}\n"
    short = runner.invoke(main, ["-h"])
    assert short.exit_code == 0 and "Commands:" in short.output and "transactions" in short.output
    assert "  --password-stdin  " in runner.invoke(main, ["users", "create", "-h"]).output


def _create(name: str, *extra: str, stdin: str | None = None):
    return CliRunner().invoke(
        main, ["users", "create", "--username", name, "--email", f"{name}@example.com", *extra], input=stdin
    )


def test_password_from_stdin(client):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    result = _create(name, "--password-stdin", stdin="stdin-password-12\n")
    assert result.exit_code == 0, result.output
    assert "stdin-password-12" not in result.output
    assert login(client, name, "stdin-password-12")["access_token"]


def test_password_prompt_asks_twice_without_echo(client):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    result = _create(name, stdin="prompted-password-1\nprompted-password-1\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") == 1 and "Repeat for confirmation" in result.output
    assert "prompted-password-1" not in result.output
    assert login(client, name, "prompted-password-1")["access_token"]


def test_password_stdin_and_option_are_exclusive_and_stdin_must_have_one():
    name = f"cli-{uuid.uuid4().hex[:8]}"
    both = _create(name, "--password", "x" * 12, "--password-stdin", stdin="y" * 12)
    assert both.exit_code == 2 and "not both" in both.output
    empty = _create(name, "--password-stdin", stdin="")
    assert empty.exit_code == 2 and "no password" in empty.output
