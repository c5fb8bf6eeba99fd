from __future__ import annotations

import sys

import click

from api.cli import main


@main.group()
def dlq() -> None:
    """Dead letters: list, retry, purge."""


@dlq.command("list")
def list_() -> None:
    """Show dead-lettered messages and transactions."""
    from db.session import unit_of_work
    from db.transactions import repository as transactions_repo
    from workers import broker
    from workers.dead_letters import list_dead_letters, with_row_errors

    letters = with_row_errors(list_dead_letters(broker))
    click.echo(f"{len(letters)} message(s) in dead-letter queues")
    for letter in letters:
        click.echo(
            f"  {letter.message_id}  {letter.actor_name}  tx={letter.transaction_id or '-'}  "
            f"{letter.dead_at:%Y-%m-%d %H:%M:%S}Z  retries={letter.retries}  {letter.error[:120]}"
        )
    with unit_of_work() as uow:
        rows = transactions_repo.dead_lettered(uow.session, limit=1000)
    click.echo(f"{len(rows)} transaction(s) with status dead_lettered")
    for tx_id, updated_at, error in rows:
        click.echo(f"  {tx_id}  {updated_at:%Y-%m-%d %H:%M:%S}  {(error or '')[:120]}")


@dlq.command("retry")
@click.argument("identifier", required=False)
@click.option(
    "--all", "retry_all", is_flag=True, help="retry every dead letter and dead_lettered transaction"
)
def retry_(identifier: str | None, retry_all: bool) -> None:
    """Retry one dead letter (message id or transaction id), or --all."""
    from db.core.errors import DomainError
    from db.session import unit_of_work
    from db.transactions import repository as transactions_repo
    from workers import broker
    from workers.dead_letters import list_dead_letters, retry

    if not identifier and not retry_all:
        raise click.UsageError("give a message/transaction id or --all")
    if retry_all:
        ids = [letter.message_id for letter in list_dead_letters(broker)]
        with unit_of_work() as uow:
            ids += [str(tx_id) for tx_id in transactions_repo.dead_lettered_ids(uow.session)]
    else:
        ids = [identifier or ""]
    failures = 0
    for one in dict.fromkeys(ids):
        try:
            result = retry(broker, one)
            click.echo(f"retried {one}: {result}")
        except DomainError as error:
            # e.g. the transaction was already retried through its message a moment ago
            failures += 1
            click.echo(f"skipped {one}: {error.message}", err=True)
    if failures and not retry_all:
        sys.exit(1)


@dlq.command("purge")
@click.argument("message_id")
def purge(message_id: str) -> None:
    """Drop one dead-lettered message (its transaction stays dead_lettered)."""
    from workers import broker
    from workers.dead_letters import find, remove

    letter = find(broker, message_id)
    if letter is None:
        click.echo("no such dead letter", err=True)
        sys.exit(1)
    remove(broker, letter)
    click.echo(f"purged {message_id}")
