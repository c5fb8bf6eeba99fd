"""NOTIFY ledgerq_family_revoked when a login session's refresh tokens are revoked

Web processes cache "is this token family revoked?" (db/auth/revoked_families.py) and
drop a family's entry when this notification arrives, at the commit of the revocation.
Row-level, like 0010's: revocations are rare, and PostgreSQL folds identical payloads
of one transaction into one notification.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 10:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_family_revoked() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ledgerq_family_revoked', NEW.family_id::text);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER refresh_tokens_notify_revoked
        AFTER UPDATE OF revoked_at ON refresh_tokens
        FOR EACH ROW
        WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
        EXECUTE FUNCTION notify_family_revoked()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER refresh_tokens_notify_revoked ON refresh_tokens")
    op.execute("DROP FUNCTION notify_family_revoked()")
