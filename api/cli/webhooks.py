"""`ledgerq webhooks list|deliveries|retry`: what operators need when a receiver
complains (run against the database directly, like `ledgerq dlq`)."""

from __future__ import annotations

import uuid

import click

from api.cli import main


@main.group()
def webhooks() -> None:
    """Webhook subscriptions and deliveries."""


@webhooks.command("list")
def list_() -> None:
    """Every subscription with its circuit state and delivery counts."""
    from sqlalchemy import func, select

    from db.models import WebhookDelivery, WebhookSubscription
    from db.session import unit_of_work

    with unit_of_work() as uow:
        subs = uow.session.scalars(
            select(WebhookSubscription)
            .where(WebhookSubscription.deleted_at.is_(None))
            .order_by(WebhookSubscription.created_at)
        ).all()
        counts: dict[tuple[uuid.UUID, str], int] = {
            (sub_id, status): n
            for sub_id, status, n in uow.session.execute(
                select(WebhookDelivery.subscription_id, WebhookDelivery.status, func.count()).group_by(
                    WebhookDelivery.subscription_id, WebhookDelivery.status
                )
            ).all()
        }
    click.echo(f"{len(subs)} webhook(s)")
    for sub in subs:
        tally = " ".join(
            f"{status}={counts.get((sub.id, status), 0)}"
            for status in ("pending", "delivering", "delivered", "failed")
        )
        click.echo(
            f"  {sub.id}  {sub.url}  events={','.join(sub.event_types)}  circuit={sub.circuit_state}  {tally}"
        )


@webhooks.command("deliveries")
@click.option("--webhook", "webhook_id", type=click.UUID, default=None, help="only this subscription")
@click.option(
    "--status",
    type=click.Choice(["pending", "delivering", "delivered", "failed"]),
    default="failed",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def deliveries(webhook_id: uuid.UUID | None, status: str, limit: int) -> None:
    """Deliveries by status, newest first: attempts, last status code, latency, error."""
    from sqlalchemy import select

    from db.models import WebhookDelivery
    from db.session import unit_of_work

    with unit_of_work() as uow:
        query = select(WebhookDelivery).where(WebhookDelivery.status == status)
        if webhook_id:
            query = query.where(WebhookDelivery.subscription_id == webhook_id)
        rows = uow.session.scalars(query.order_by(WebhookDelivery.updated_at.desc()).limit(limit)).all()
    click.echo(f"{len(rows)} {status} deliver{'y' if len(rows) == 1 else 'ies'}")
    for d in rows:
        click.echo(
            f"  {d.id}  webhook={d.subscription_id}  event={d.event_id} {d.event_type}  attempts={d.attempts}  "
            f"last_status={d.last_status_code or '-'}  latency_ms={d.last_latency_ms or '-'}  {(d.last_error or '')[:120]}"
        )


@webhooks.command("retry")
@click.argument("delivery_id", type=click.UUID, required=False)
@click.option("--all-failed", is_flag=True, help="retry every failed delivery")
def retry_(delivery_id: uuid.UUID | None, all_failed: bool) -> None:
    """Make a delivery (or every failed one) due now, with a fresh retry window."""
    from sqlalchemy import select

    from db.core.errors import DomainError
    from db.models import WebhookDelivery
    from db.session import unit_of_work
    from db.webhooks import service

    if not delivery_id and not all_failed:
        raise click.UsageError("give a delivery id or --all-failed")
    with unit_of_work() as uow:
        if delivery_id:
            targets = list(
                uow.session.scalars(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
            )
            if not targets:
                raise click.ClickException(f"no delivery {delivery_id}")
        else:
            targets = list(
                uow.session.scalars(select(WebhookDelivery).where(WebhookDelivery.status == "failed"))
            )
        try:
            for d in targets:
                service.retry(uow.session, d.subscription_id, d.id, actor_id=None)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"{len(targets)} deliver{'y' if len(targets) == 1 else 'ies'} due now (sent by the next dispatch tick)"
    )
