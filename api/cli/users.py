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


@users.command("rate-limits")
@click.argument("user")
@click.option("--requests", help="every /api/v1 request, e.g. '6000 per minute'")
@click.option("--money", help="money-moving POSTs, e.g. '3000 per minute'")
@click.option("--reason", help="why (kept in the audit log); required unless --clear/--show")
@click.option("--clear", is_flag=True, help="remove the override: the defaults apply again")
def rate_limits(user: str, requests: str | None, money: str | None, reason: str | None, clear: bool) -> None:
    """Show or set USER's (username, email or id) quota override; audited like the
    admin endpoint PUT /api/v1/users/{id}/rate-limits."""
    from db.auth import rate_limits as overrides
    from db.auth import repository as users_repo
    from db.core.config import get_settings
    from db.session import unit_of_work

    try:
        with unit_of_work() as uow:
            found = users_repo.by_login(uow.session, user) or _by_id(uow.session, user)
            if found is None:
                raise click.ClickException(f"no user {user!r}")
            if clear:
                overrides.clear_override(uow.session, actor_id=None, user_id=found.id)
                outcome = "defaults"
            elif requests or money:
                if not reason:
                    raise click.UsageError("--reason is required to set an override")
                row = overrides.set_override(
                    uow.session,
                    actor_id=None,
                    user_id=found.id,
                    requests=requests,
                    money=money,
                    reason=reason,
                )
                outcome = f"requests={row.requests or 'default'} money={row.money or 'default'}"
            else:
                current = overrides.get(uow.session, found.id)
                click.echo(
                    f"{found.username}: "
                    + (
                        f"requests={current.requests or 'default'} money={current.money or 'default'} ({current.reason})"
                        if current
                        else "defaults"
                    )
                )
                return
    except DomainError as error:
        click.echo(f"error: {error.message} {error.details or ''}", err=True)
        sys.exit(1)
    overrides.forget_mirror(get_settings())
    click.echo(f"{found.username}: {outcome}")


def _by_id(session, value: str):
    import uuid

    from db.auth import repository as users_repo

    try:
        return users_repo.get(session, uuid.UUID(value))
    except ValueError:
        return None
