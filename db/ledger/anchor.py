"""The daily anchor of the tamper-evident ledger: once per UTC day, one audit row
`ledger.anchored` holds `heads_digest` over every account's chain head (hash_chain.py)
and the last entry id it covers. Published outside ledgerq (a ticket, a notary, an
email to the auditor), that one value pins the whole ledger as it was: a later rewrite
of any account's history before it, even one that recomputes the chain and moves the
head, no longer reproduces the digest, and `ledgerq verify` (`check_ledger_anchor`)
recomputes it for the latest anchor from the entries up to `last_entry_id`.

The heads are read under `LOCK TABLE ledger_entries, balances IN SHARE MODE`: it waits
for the postings in flight (one that has copied its entries but not yet moved its heads
would otherwise hold ids below `last_entry_id` that commit after the read) and holds
new ones back for the one read, so "each account's last entry with id <= last_entry_id"
is exactly the heads read. A short `lock_timeout`: behind a long posting (an atomic batch)
the tick gives up and the next one tries again.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.ledger.hash_chain import heads_digest
from db.models import AuditLog

ACTION = "ledger.anchored"
LOCK_TIMEOUT = "5s"


def latest(session: Session) -> AuditLog | None:
    return session.scalars(
        select(AuditLog).where(AuditLog.action == ACTION).order_by(AuditLog.id.desc()).limit(1)
    ).first()


def anchor_today(session: Session, today: date) -> dict[str, Any] | None:
    """Write today's anchor in the caller's transaction, unless there is one; returns
    its data (None when today is anchored already)."""
    # One anchor writer at a time (a redelivered tick, a second scheduler's).
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('ledgerq.ledger_anchor'))"))
    found = latest(session)
    if found is not None and found.entity_id == today.isoformat():
        return None
    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    session.execute(text("LOCK TABLE ledger_entries, balances IN SHARE MODE"))
    heads = session.execute(
        text("SELECT account_id, head_hash FROM balances WHERE head_hash IS NOT NULL")
    ).all()
    last_entry_id = session.execute(text("SELECT COALESCE(max(id), 0) FROM ledger_entries")).scalar_one()
    data = {
        "digest": heads_digest((account_id, head) for account_id, head in heads),
        "accounts": len(heads),
        "last_entry_id": int(last_entry_id),
        "encoding": "sha256 over '<account_id> <head_hash>\\n' per account, ascending account id",
    }
    audit.record(session, action=ACTION, entity_type="ledger", entity_id=today.isoformat(), data=data)
    return data


def recompute(session: Session, last_entry_id: int) -> tuple[str, int]:
    """The digest and account count of the heads as they were when `last_entry_id` was
    the newest entry: each account's last entry up to it, from the entries themselves."""
    rows = session.execute(
        text(
            "SELECT DISTINCT ON (account_id) account_id, hash FROM ledger_entries WHERE id <= :last "
            "ORDER BY account_id, id DESC"
        ),
        {"last": last_entry_id},
    ).all()
    return heads_digest((account_id, digest) for account_id, digest in rows), len(rows)
