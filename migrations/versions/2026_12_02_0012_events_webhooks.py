"""events (the transactional outbox and its feed) and webhooks (subscriptions, deliveries)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 02:00:00

`events.xid` is the writing transaction's id (`pg_current_xact_id()`, xid8): the feed
orders by (xid, seq) and exposes only events below the oldest running transaction's
horizon, so a reader never sees a later event before an earlier one commits
(db/events/feed.py). Events are append-only (a trigger forbids UPDATE); DELETE is the
retention prune's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)
DELIVERY_STATUSES = "('pending', 'delivering', 'delivered', 'failed')"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            id UUID NOT NULL,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            type VARCHAR(64) NOT NULL,
            account_ids UUID[] NOT NULL DEFAULT '{}',
            data JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT pk_events PRIMARY KEY (seq),
            CONSTRAINT uq_events_id UNIQUE (id)
        )
        """
    )
    op.execute("CREATE INDEX ix_events_xid_seq ON events (xid, seq)")
    op.execute("CREATE INDEX ix_events_account_ids ON events USING gin (account_ids)")
    op.execute("CREATE INDEX ix_events_created_at ON events (created_at)")
    op.execute(
        """
        CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are append-only';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_append_only BEFORE UPDATE ON events "
        "FOR EACH ROW EXECUTE FUNCTION events_append_only()"
    )

    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("owner_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.String(64)), nullable=False),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        sa.Column("secret_encrypted", sa.LargeBinary, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        # The circuit breaker (db/webhooks/breaker.py): closed | open | half_open.
        sa.Column("circuit_state", sa.String(16), nullable=False, server_default="closed"),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("circuit_opened_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("circuit_retry_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "circuit_state IN ('closed', 'open', 'half_open')",
            name=op.f("ck_webhook_subscriptions_circuit_state_valid"),
        ),
    )
    op.create_index("ix_webhook_subscriptions_owner_id", "webhook_subscriptions", ["owner_id"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", UUID, primary_key=True),
        sa.Column(
            "subscription_id",
            UUID,
            sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", UUID, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.String(500)),
        sa.Column("last_latency_ms", sa.Integer),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        # Retries stop `webhook_retry_window_s` after this (reset by a manual retry).
        sa.Column(
            "window_started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"status IN {DELIVERY_STATUSES}", name=op.f("ck_webhook_deliveries_status_valid")),
        sa.UniqueConstraint(
            "subscription_id", "event_id", name=op.f("uq_webhook_deliveries_subscription_id")
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["subscription_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_subscription_created", "webhook_deliveries", ["subscription_id", "created_at"]
    )
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])

    # Where the fan-out stands in the feed: one row, moved under FOR UPDATE by the
    # dispatcher (db/webhooks/fanout.py), so two dispatchers never create deliveries twice.
    op.execute(
        """
        CREATE TABLE webhook_fanout_cursor (
            id SMALLINT NOT NULL,
            xid xid8 NOT NULL,
            seq BIGINT NOT NULL,
            CONSTRAINT pk_webhook_fanout_cursor PRIMARY KEY (id),
            CONSTRAINT ck_webhook_fanout_cursor_single_row CHECK (id = 1)
        )
        """
    )
    op.execute("INSERT INTO webhook_fanout_cursor (id, xid, seq) VALUES (1, '0', 0)")


def downgrade() -> None:
    op.drop_table("webhook_fanout_cursor")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.execute("DROP TABLE events")
    op.execute("DROP FUNCTION events_append_only()")
