"""`GET /events`: the feed in a stable order that never skips an event.

Sequence numbers are taken at INSERT and transactions commit in any order: the
transaction holding seq 10 may commit after the one holding 11, so "after seq 11" would
lose 10. Instead each event carries its writer's transaction id (`xid`, xid8, set by the
database), the feed orders by (xid, seq), and it shows only events below the *horizon*:
the oldest transaction that was still running when the statement's snapshot was taken
(`pg_snapshot_xip`), or the snapshot's `xmax` when none was. Every transaction below the
horizon has committed or rolled back, and any event written later belongs to a
transaction at or above it, hence after every cursor handed out so far. A cursor is the
(xid, seq) of the last event returned.

Transaction ids are server-wide, but only this database's transactions can write its
events: a running transaction that `pg_stat_activity` shows connected to another database
does not hold the horizon back (one that cannot be attributed, say because it just
ended, still does: that only delays an event by one poll, it never skips one). The price:
an event appears once every older transaction *of this database* has ended, so one
long-running write transaction delays the feed; it never reorders it.
deployment/EVENTS.md says how to watch for that.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.core.errors import ValidationFailed
from db.core.principal import Principal

# The horizon as one scalar subquery over the statement's snapshot (see the docstring).
HORIZON = """(
    SELECT coalesce(min(x.xid), pg_snapshot_xmax(pg_current_snapshot()))
    FROM pg_snapshot_xip(pg_current_snapshot()) AS x(xid)
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_stat_activity a
        WHERE a.backend_xid IS NOT NULL
          AND a.datid IS NOT NULL
          AND a.datid <> (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
          AND a.backend_xid::text = ((x.xid::text::numeric % 4294967296)::bigint)::text
    )
)"""

_CURSOR = re.compile(r"^(\d{1,20})-(\d{1,19})$")
START = "0-0"


@dataclass(frozen=True)
class FeedEvent:
    id: uuid.UUID
    type: str
    created_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class FeedPage:
    items: list[FeedEvent]
    next_cursor: str


def parse_cursor(cursor: str | None) -> tuple[int, int]:
    match = _CURSOR.match(cursor or START)
    if match is None:
        raise ValidationFailed.field("after", "not a cursor this feed returned")
    return int(match.group(1)), int(match.group(2))


def read(
    session: Session,
    principal: Principal,
    *,
    after: str | None,
    limit: int,
    event_type: str | None = None,
) -> FeedPage:
    """Events after `after` in feed order that `principal` may see; `next_cursor` is
    the position after the last one returned, or `after` itself when none is."""
    xid, seq = parse_cursor(after)
    filters = [
        "(e.xid, e.seq) > (CAST(:xid AS text)::xid8, :seq)",
        f"e.xid < {HORIZON}",
    ]
    params: dict[str, Any] = {"xid": str(xid), "seq": seq, "limit": limit}
    if event_type:
        filters.append("e.type = :type")
        params["type"] = event_type
    if not principal.sees_everything:
        filters.append("e.account_ids && ARRAY(SELECT a.id FROM accounts a WHERE a.owner_id = :owner)")
        params["owner"] = principal.id
    rows = session.execute(
        text(
            "SELECT e.id, e.type, e.created_at, e.data, e.xid::text AS xid, e.seq FROM events e "
            f"WHERE {' AND '.join(filters)} ORDER BY e.xid, e.seq LIMIT :limit"
        ),
        params,
    ).all()
    items = [FeedEvent(r.id, r.type, r.created_at, r.data) for r in rows]
    next_cursor = f"{rows[-1].xid}-{rows[-1].seq}" if rows else f"{xid}-{seq}"
    return FeedPage(items, next_cursor)


def prune(session: Session, *, retention_days: int, batch_size: int = 10_000) -> int:
    """Delete events older than the retention period (their deliveries go with them);
    how many. In batches, so a first prune of a large table holds no long lock."""
    deleted = session.execute(
        text(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events "
            "WHERE created_at < now() - make_interval(days => :days) ORDER BY seq LIMIT :n)"
        ),
        {"days": retention_days, "n": batch_size},
    ).rowcount  # type: ignore[attr-defined]  # a DELETE returns a CursorResult
    return int(deleted or 0)
