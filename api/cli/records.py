"""`ledgerq accounts list|show` and `ledgerq transactions list|show`: an operator's
(admin's) view straight from the database, with no API token: the same fields as the API
(`--json` prints the API's own schemas), newest or id order, capped by `--limit`."""

from __future__ import annotations

import json
import uuid

import click

from api.cli import main

_UUID = click.UUID


def _operator():
    """Who the CLI reads as: an operator with the database's keys sees everything."""
    from db.core.principal import Principal

    return Principal(id=uuid.UUID(int=0), role="admin", username="ledgerq-cli")


def _print_json(value) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _print_rows(found: list[dict], as_json: bool, title: str, line) -> None:
    """`list`: the API's JSON array, or a count and one `line(row)` each."""
    if as_json:
        _print_json(found)
        return
    click.echo(f"{len(found)} {title}")
    for row in found:
        click.echo(f"  {line(row)}")


def _print_record(found: dict, as_json: bool) -> None:
    """`show`: the API's JSON, or one `field: value` line each."""
    if as_json:
        _print_json(found)
        return
    for key, value in found.items():
        if not isinstance(value, list):
            click.echo(f"{key:>18}: {value}")


def _account_views(session, rows):
    from db.accounts.service import views

    return views(session, rows)


@main.group()
def accounts() -> None:
    """Accounts and their balances (admin, through the database)."""


@accounts.command("list")
@click.option("--owner", type=_UUID, help="only this user's accounts")
@click.option("--currency", help="only accounts in this ISO 4217 currency")
@click.option("--kind", type=click.Choice(["user", "system"]), help="user accounts or system (external) ones")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON (an array)")
def list_accounts(owner, currency, kind, limit, as_json) -> None:
    """List accounts in id order with balance and available balance."""
    from api.accounts.schemas import AccountSchema
    from db.accounts import repository
    from db.session import unit_of_work

    with unit_of_work() as uow:
        rows = repository.list_visible(
            uow.session,
            owner_id=owner,
            currency=currency and currency.upper(),
            kind=kind,
            after=None,
            limit=limit,
        )[:limit]
        found = AccountSchema(many=True).dump(_account_views(uow.session, rows))
    _print_rows(found, as_json, "account(s)", _account_line)


def _account_line(account: dict) -> str:
    return (
        f"{account['id']}  {account['currency']}  {account['kind']:<6}  {account['status']:<7}  "
        f"balance {account['balance']:>14}  available {account['available_balance']:>14}  "
        f"{account['name'] or ''}"
    )


@accounts.command("show")
@click.argument("account_id", type=_UUID)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def show_account(account_id: uuid.UUID, as_json: bool) -> None:
    """One account with its balance figures and owner."""
    from api.accounts.schemas import AccountSchema
    from db.accounts import repository
    from db.accounts.service import view
    from db.session import unit_of_work

    with unit_of_work() as uow:
        account = repository.get(uow.session, account_id)
        if account is None:
            raise click.ClickException(f"no account {account_id}")
        found = AccountSchema().dump(view(uow.session, account))
    _print_record(found, as_json)


@main.group()
def transactions() -> None:
    """Transactions (admin, through the database)."""


@transactions.command("list")
@click.option("--account", type=_UUID, help="only transactions touching this account")
@click.option(
    "--status",
    type=click.Choice(["scheduled", "pending", "completed", "failed", "cancelled", "dead_lettered"]),
)
@click.option("--type", "type_", type=click.Choice(["transfer", "credit", "debit", "reversal"]))
@click.option("--batch", type=_UUID, help="only this batch's transactions")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON (an array)")
def list_transactions(account, status, type_, batch, limit, as_json) -> None:
    """List transactions, newest first."""
    from api.transactions.schemas import TransactionSchema
    from db.session import unit_of_work
    from db.transactions import repository
    from db.transactions import views as transaction_views

    with unit_of_work() as uow:
        rows = repository.history(
            uow.session,
            owner_id=None,
            account_id=account,
            status=status,
            type_=type_,
            batch_id=batch,
            created_from=None,
            created_to=None,
            before_seq=None,
            limit=limit,
        )[:limit]
        found = TransactionSchema(many=True).dump(transaction_views.views(uow.session, _operator(), rows))
    _print_rows(found, as_json, "transaction(s), newest first", _transaction_line)


def _transaction_line(tx: dict) -> str:
    failure = f"  {tx['failure_code']}" if tx["failure_code"] else ""
    return (
        f"{tx['id']}  {tx['created_at']}  {tx['type']:<8}  {tx['status']:<13}  "
        f"{tx['amount']:>14} {tx['currency']}  {tx['from_account_id']} -> {tx['to_account_id']}{failure}"
    )


@transactions.command("show")
@click.argument("transaction_id", type=_UUID)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def show_transaction(transaction_id: uuid.UUID, as_json: bool) -> None:
    """One transaction with its status, failure and ledger entries."""
    from sqlalchemy import select

    from api.transactions.schemas import TransactionSchema
    from db.core.money import format_minor
    from db.models import LedgerEntry
    from db.session import unit_of_work
    from db.transactions import repository
    from db.transactions import views as transaction_views

    with unit_of_work() as uow:
        tx = repository.get(uow.session, transaction_id)
        if tx is None:
            raise click.ClickException(f"no transaction {transaction_id}")
        found = TransactionSchema().dump(transaction_views.view(uow.session, _operator(), tx))
        entries = [
            {
                "account_id": str(e.account_id),
                "amount": format_minor(e.amount_minor, e.currency),
                "balance_after": format_minor(e.balance_after_minor, e.currency),
            }
            for e in uow.session.scalars(
                select(LedgerEntry).where(LedgerEntry.transaction_id == tx.id).order_by(LedgerEntry.id)
            )
        ]
    _print_record({**found, "entries": entries}, as_json)
    if as_json:
        return
    click.echo(f"{'entries':>18}: {len(entries)}")
    for entry in entries:
        click.echo(
            f"{'':>20}{entry['account_id']}  {entry['amount']:>14}  balance after {entry['balance_after']}"
        )
