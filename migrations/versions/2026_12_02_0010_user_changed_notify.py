"""NOTIFY ledgerq_user_changed when a user's role, activity, token version or name changes

Web processes cache the columns of the per-request user check (db/auth/auth_states.py)
and drop a user's entry when this notification arrives, at the commit of the change.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_user_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ledgerq_user_changed', NEW.id::text);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER users_notify_changed
        AFTER UPDATE OF role, is_active, token_version, username ON users
        FOR EACH ROW
        WHEN (OLD.role IS DISTINCT FROM NEW.role OR OLD.is_active IS DISTINCT FROM NEW.is_active
              OR OLD.token_version IS DISTINCT FROM NEW.token_version
              OR OLD.username IS DISTINCT FROM NEW.username)
        EXECUTE FUNCTION notify_user_changed()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER users_notify_changed ON users")
    op.execute("DROP FUNCTION notify_user_changed()")
