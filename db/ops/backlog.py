"""What is waiting, and for how long: the numbers ops watch first.

Two short statements whose every part reads only the waiting rows through a partial
index (pending and due scheduled transactions, active schedules) or the few unfinished
batches: their cost grows with the backlog, not with history. The scheduler leader
runs them every `SCHEDULER_QUEUE_GAUGE_SECONDS`, never per scrape (scheduler/metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

# Batches a worker still has to move forward (the batch sweeper's statuses).
UNFINISHED_BATCH_STATUSES = ("received", "validating", "processing")

_BACKLOG = text(
    """
    SELECT
      (SELECT count(*) FROM transactions WHERE status = 'pending') AS pending,
      (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)
         FROM transactions WHERE status = 'pending') AS oldest_pending_s,
      (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(scheduled_for)), 0)
         FROM transactions WHERE status = 'scheduled' AND scheduled_for <= now()) AS transfer_lag_s,
      (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(next_run_at)), 0)
         FROM schedules WHERE status = 'active' AND next_run_at <= now()) AS standing_order_lag_s,
      (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(updated_at)), 0)
         FROM batches WHERE status IN :unfinished) AS oldest_batch_idle_s
    """
).bindparams(bindparam("unfinished", value=UNFINISHED_BATCH_STATUSES, expanding=True))

_BATCHES = text(
    "SELECT status, count(*) FROM batches WHERE status IN :unfinished GROUP BY status"
).bindparams(bindparam("unfinished", value=UNFINISHED_BATCH_STATUSES, expanding=True))


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_pending_age_s: float
    # How late the oldest due item is: a healthy scheduler keeps these near one tick.
    transfer_lag_s: float
    standing_order_lag_s: float
    batches_in_progress: dict[str, int]
    oldest_batch_idle_s: float


def backlog(session: Session) -> Backlog:
    row = session.execute(_BACKLOG).one()
    counts = {status: count for status, count in session.execute(_BATCHES)}
    return Backlog(
        pending=int(row.pending),
        oldest_pending_age_s=max(0.0, float(row.oldest_pending_s)),
        transfer_lag_s=max(0.0, float(row.transfer_lag_s)),
        standing_order_lag_s=max(0.0, float(row.standing_order_lag_s)),
        batches_in_progress={status: int(counts.get(status, 0)) for status in UNFINISHED_BATCH_STATUSES},
        oldest_batch_idle_s=max(0.0, float(row.oldest_batch_idle_s)),
    )
