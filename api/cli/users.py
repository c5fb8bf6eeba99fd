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
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=False)
@click.option("--role", type=click.Choice(ROLES), default="customer", show_default=True)
def create(username: str, email: str, password: str, role: str) -> None:
    """Create a user (this is how the first admin is made)."""
    from db.auth.users import create_user
    from db.session import unit_of_work

    try:
        with unit_of_work() as uow:
            user = create_user(uow.session, username=username, email=email, password=password, role=role)
    except DomainError as error:
        click.echo(f"error: {error.message} {error.details or ''}", err=True)
        sys.exit(1)
    click.echo(f"created {role} {username} ({user.id})")
