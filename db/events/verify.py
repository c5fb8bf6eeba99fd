"""The outbox's invariant for `ledgerq verify`: every transaction that reached a final
status has its `transaction.<status>` event.

Only for decisions the outbox can still show: made since the oldest event kept (events
are pruned after the retention period, and rows decided before the outbox existed have
none).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_MISSING = text(
    """
    SELECT t.id, t.status FROM transactions t
    WHERE t.status IN ('completed', 'failed', 'cancelled', 'dead_lettered')
      AND COALESCE(t.completed_at, t.updated_at) >= (SELECT min(created_at) FROM events)
      AND NOT EXISTS (
          SELECT 1 FROM events e
          WHERE e.type = 'transaction.' || t.status AND e.data->>'id' = t.id::text
      )
    ORDER BY t.seq
    LIMIT 100
    """
)


def check_final_transactions_announced(session: Session) -> list[str]:
    return [
        f"transaction {tx_id} is {status} but has no transaction.{status} event"
        for tx_id, status in session.execute(_MISSING).all()
    ]
