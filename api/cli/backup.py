"""`ledgerq backup FILE` and `ledgerq restore FILE`: pg_dump / pg_restore, and a restore
is always followed by `verify` (db/ops/backups.py; playbook in deployment/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from api.cli import main, report_verification
from db.core.config import get_settings, psycopg_url


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup(file: Path) -> None:
    """Dump the database (pg_dump custom format) into FILE, consistently, while it runs."""
    from db.ops.backups import BackupError, dump

    try:
        dump(get_settings().database_url, file)
    except BackupError as error:
        click.echo(f"backup FAILED: {error}", err=True)
        sys.exit(1)
    click.echo(f"backup written: {file} ({file.stat().st_size} bytes)")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--database-url",
    default=None,
    help="restore into this database instead of DATABASE_URL (e.g. a fresh one to check a backup)",
)
@click.option("--clean", is_flag=True, help="drop and recreate what the target already has (default: refuse)")
def restore(file: Path, database_url: str | None, clean: bool) -> None:
    """Restore FILE (from `ledgerq backup`), then verify every ledger invariant on the result."""
    from db.ledger.verify import verify_ledger
    from db.migrate import head_revisions
    from db.ops.backups import BackupError, schema_revisions
    from db.ops.backups import restore as pg_restore
    from db.session import session_factory

    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": psycopg_url(database_url)})
    try:
        pg_restore(file, settings.database_url, clean=clean)
    except BackupError as error:
        click.echo(f"restore FAILED: {error}", err=True)
        sys.exit(1)
    click.echo(f"restored {file}")
    with session_factory(settings)() as session:
        report_verification(verify_ledger(session), "ledger verification FAILED after restore")
    revisions, heads = schema_revisions(settings.database_url), head_revisions()
    if revisions != heads:
        click.echo(f"schema at {sorted(revisions)}, this code expects {sorted(heads)}: run `ledgerq migrate`")
