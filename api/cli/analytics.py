"""`ledgerq analytics rebuild`: recompute the analytics rollups from the transactions and
the ledger entries (after a restore of old data, a bug, or `ledgerq verify` naming a
mismatch). Safe while the system runs: see db/analytics/service.py `rebuild`."""

from __future__ import annotations

import time

import click

from api.cli import main


@main.group()
def analytics() -> None:
    """Analytics rollups (GET /analytics/...)."""


@analytics.command("rebuild")
def rebuild() -> None:
    """Recompute the daily and per-account rollups from a direct recount.

    Safe while the system runs and stops no writer: every rollup row that disagrees
    with the recount is corrected by the difference, read in one snapshot, and
    postings that commit meanwhile add their own share (a few seconds per million
    transactions; reports the rows it corrected: 0 when the rollups were right).
    Then it folds the closed days' shards, as the scheduler's hourly tick does."""
    from db.analytics.service import rebuild as rebuild_rollups
    from db.session import unit_of_work
    from workers.analytics import fold_closed_days

    began = time.monotonic()
    with unit_of_work() as uow:
        daily_rows, account_rows = rebuild_rollups(uow.session)
    folded = fold_closed_days()
    click.echo(
        f"analytics rebuilt: corrected {daily_rows} daily row(s) and {account_rows} account-day row(s), "
        f"folded {folded} day-currency row(s) in {time.monotonic() - began:.1f} s"
    )
