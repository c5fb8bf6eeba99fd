"""The `ledgerq` command line (pyproject: `ledgerq = api.cli:main`)."""

from __future__ import annotations

import os
import sys

import click

from db.core.config import ConfigurationError, get_settings
from db.core.logs import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ledgerq", prog_name="ledgerq", message="%(prog)s %(version)s")
def main() -> None:
    """ledgerq: queue-centric money transfers on a double-entry ledger."""
    try:
        settings = get_settings()
    except ConfigurationError:
        # Not here: `-h`, `--version` and `up` (which sets up a development environment of
        # its own) need no settings, and a command that does reports the same error itself.
        return
    configure_logging(settings)


@main.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from db.migrate import upgrade

    upgrade(get_settings().database_url)
    click.echo("migrations applied")


@main.command()
@click.option("--processes", type=int, default=None, help="worker processes (WORKER_PROCESSES)")
@click.option("--threads", type=int, default=None, help="threads per process (WORKER_THREADS)")
@click.option("--queues", "-Q", multiple=True, help="only these queues (default: all)")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="this group's Prometheus port (WORKER_METRICS_PORT; each group on a host needs its own; 0 disables)",
)
def worker(
    processes: int | None, threads: int | None, queues: tuple[str, ...], metrics_port: int | None
) -> None:
    """Run Dramatiq workers (`dramatiq workers`) with ledgerq's settings applied."""
    settings = get_settings()
    # Dramatiq reads its prefetch from the environment at import time; keep it small so a
    # killed worker strands few messages (see db/core/config.py).
    os.environ["dramatiq_queue_prefetch"] = str(settings.worker_prefetch)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        # One multiprocess metrics directory per worker group, shared by Dramatiq's
        # counters and ours (workers/transactions.py); served by workers/metrics.py.
        from db.ops.metrics_dirs import fresh_multiprocess_dir

        metrics_dir = fresh_multiprocess_dir("ledgerq-worker-metrics-")
        os.environ.update(
            {
                "LEDGERQ_WORKER_METRICS": "1",
                "WORKER_METRICS_PORT": str(port),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "dramatiq_prom_db": str(metrics_dir),
                # execv keeps the pid: the Dramatiq parent is this process.
                "LEDGERQ_METRICS_GROUP_PID": str(os.getpid()),
            }
        )
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "workers",
        "--processes",
        str(processes or settings.worker_processes),
        "--threads",
        str(threads or settings.worker_threads),
        "--skip-logging",
    ]
    if queues:
        argv += ["--queues", *queues]
    sys.stdout.flush()
    os.execv(sys.executable, argv)


@main.command()
def scheduler() -> None:
    """Run the scheduler: due transfers, standing orders, sweeper, queue gauges (leader-elected)."""
    from db.ops.tracing import configure_tracing

    configure_tracing("scheduler")  # before `workers` is imported, which would say "worker"
    from scheduler.main import run

    run(get_settings())


@main.command()
def verify() -> None:
    """Check every ledger invariant; exit 1 with a report when one breaks."""
    from db.ledger.verify import verify_ledger
    from db.session import unit_of_work

    with unit_of_work() as uow:
        report_verification(verify_ledger(uow.session))


def report_verification(problems: list[str], failed: str = "ledger verification FAILED") -> None:
    """`verify`'s report (also after `restore`): exit 1 with the problems, if any."""
    if problems:
        click.echo(f"{failed}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    click.echo("ledger OK: every invariant holds")


@main.command("rebuild-balances")
@click.option("--dry-run", is_flag=True, help="only report what would change")
def rebuild_balances(dry_run: bool) -> None:
    """Recompute every balance from the ledger entries (replay) and report corrections."""
    from db.core.money import format_minor
    from db.ledger.rebuild import rebuild_balances as rebuild
    from db.session import unit_of_work

    with unit_of_work() as uow:
        corrections = rebuild(uow.session, apply=not dry_run)
        if dry_run:
            uow.rollback()
    for fix in corrections:
        click.echo(
            f"account {fix.account_id}: {format_minor(fix.was_minor, fix.currency)} -> "
            f"{format_minor(fix.now_minor, fix.currency)} {fix.currency}"
        )
    verb = "would correct" if dry_run else "corrected"
    click.echo(f"{verb} {len(corrections)} balance(s); every other balance matches its entries")


from api.cli import analytics as _analytics  # noqa: E402,F401  (registers `analytics`)
from api.cli import backup as _backup  # noqa: E402,F401  (registers `backup`, `restore`)
from api.cli import batch as _batch  # noqa: E402,F401  (registers `batch`)
from api.cli import bench as _bench  # noqa: E402,F401  (registers `bench`)
from api.cli import chaos as _chaos  # noqa: E402,F401  (registers `chaos`)
from api.cli import dlq as _dlq  # noqa: E402,F401  (registers `dlq`)
from api.cli import records as _records  # noqa: E402,F401  (registers `accounts`, `transactions`)
from api.cli import up as _up  # noqa: E402,F401  (registers `up`)
from api.cli import users as _users  # noqa: E402,F401  (registers `users`)
from api.cli import webhooks as _webhooks  # noqa: E402,F401  (registers `webhooks`)
