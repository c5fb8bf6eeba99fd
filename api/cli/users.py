from __future__ import annotations

import sys

import click

from api.cli import main
from db.core.errors import DomainError
from db.models import ROLES


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option(
    "--password",
    default=None,
    help="visible in `ps` and shell history: prefer the prompt or --password-stdin",
)
@click.option(
    "--password-stdin", is_flag=True, help="read the password from the first line of standard input"
)
@click.option("--role", type=click.Choice(ROLES), default="customer", show_default=True)
def create(username: str, email: str, password: str | None, password_stdin: bool, role: str) -> None:
    """Create a user (this is how the first admin is made).

    Without --password or --password-stdin, asks for the password twice (not echoed)."""
    from db.auth.users import create_user

    if password is not None and password_stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: standard input has no password")
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    from db.session import unit_of_work

    try:
        with unit_of_work() as uow:
            user = create_user(uow.session, username=username, email=email, password=password, role=role)
    except DomainError as error:
        click.echo(f"error: {error.message} {error.details or ''}", err=True)
        sys.exit(1)
    click.echo(f"created {role} {username} ({user.id})")
