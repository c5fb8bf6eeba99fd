"""NOTIFY ledgerq_transaction_final when a transaction reaches a final status

Long-polls (GET /transactions/{id}?wait=N) wait on a per-process LISTEN instead of
polling the database. The notification is sent by PostgreSQL at the commit of the
transaction that finalised the row, whatever code path did it (single posting, batch
chunk, cancel, dead-lettering), so no writer has to remember to send it.

One statement-level trigger with transition tables: a batch chunk that finalises
hundreds of rows pays one trigger call and a few notifications (ids comma-joined, at
most 200 per payload: the payload limit is 8000 bytes), not one per row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_transaction_final() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            chunk text;
        BEGIN
            FOR chunk IN
                SELECT string_agg(id::text, ',')
                FROM (
                    SELECT n.id, (row_number() OVER () - 1) / 200 AS part
                    FROM new_rows n JOIN old_rows o ON o.id = n.id
                    WHERE n.status IN ('completed', 'failed', 'cancelled', 'dead_lettered')
                      AND o.status IS DISTINCT FROM n.status
                ) finalised
                GROUP BY part
            LOOP
                PERFORM pg_notify('ledgerq_transaction_final', chunk);
            END LOOP;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER transactions_notify_final
        AFTER UPDATE ON transactions
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION notify_transaction_final()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER transactions_notify_final ON transactions")
    op.execute("DROP FUNCTION notify_transaction_final()")
