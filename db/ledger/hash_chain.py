"""The tamper-evident ledger: every entry's `hash` chains it to the entry before it on
the same account, so an edit, a deletion or an insertion anywhere in an account's
history breaks a link that `ledgerq verify` (`check_hash_chain`) names.

The canonical encoding (version 1), what an auditor recomputes outside ledgerq: the
UTF-8 bytes of these nine lines joined by a single "\\n" (no trailing newline), hashed
with SHA-256 and written as 64 lowercase hex digits:

    ledgerq-entry-v1
    <id>                   the entry id, base 10
    <transaction_id>       lowercase UUID, 8-4-4-4-12
    <account_id>           lowercase UUID, 8-4-4-4-12
    <amount_minor>         signed integer minor units, base 10 ("-2550"), no "+"
    <currency>             ISO 4217 code, upper case
    <balance_after_minor>  signed integer minor units, base 10
    <created_at>           UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ (always 6 fraction digits)
    <prev_hash>            the previous entry's hash on the same account (by id), or
                           the empty string for the account's first entry

No field can contain a newline, so the lines are unambiguous. `SQL_ENTRY_HASH` is the
same definition in SQL (what `verify` runs), and `heads_digest` folds every account's
chain head into the one value the daily anchor publishes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

VERSION_TAG = "ledgerq-entry-v1"

# The encoding above in SQL over a row of ledger_entries (PostgreSQL 11+: sha256()).
# concat_ws skips NULLs, hence the COALESCE: a first entry's last line is empty.
SQL_ENTRY_HASH = (
    "encode(sha256(convert_to(concat_ws(E'\\n', 'ledgerq-entry-v1', id::text, transaction_id::text, "
    "account_id::text, amount_minor::text, currency, balance_after_minor::text, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "COALESCE(prev_hash, '')), 'UTF8')), 'hex')"
)


def canonical_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    entry_id: int,
    transaction_id: uuid.UUID,
    account_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    balance_after_minor: int,
    created_at: str,
    prev_hash: str | None,
) -> str:
    """`created_at` already in `canonical_time` form (a flush formats it once)."""
    text = "\n".join(
        (
            VERSION_TAG,
            str(entry_id),
            str(transaction_id),
            str(account_id),
            str(amount_minor),
            currency,
            str(balance_after_minor),
            created_at,
            prev_hash or "",
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def link(
    rows: Sequence[tuple[Any, ...]],
    ids: Sequence[int],
    created_at: datetime,
    heads: MutableMapping[uuid.UUID, str | None],
) -> list[tuple[Any, ...]]:
    """Chain `rows` (transaction_id, account_id, amount_minor, currency,
    balance_after_minor), in posting order, onto `heads` (each account's last hash, read
    under its lock; moved forward in place). `ids` ascend, one per row, so the chain's
    order is the id order every reader uses. Returns the rows as COPY writes them:
    (id, transaction_id, account_id, amount_minor, currency, balance_after_minor,
    created_at, hash, prev_hash)."""
    stamp = canonical_time(created_at)
    linked = []
    for entry_id, (transaction_id, account_id, amount, currency, after) in zip(ids, rows, strict=True):
        prev = heads[account_id]
        digest = entry_hash(entry_id, transaction_id, account_id, amount, currency, after, stamp, prev)
        heads[account_id] = digest
        linked.append((entry_id, transaction_id, account_id, amount, currency, after, stamp, digest, prev))
    return linked


def heads_digest(heads: Iterable[tuple[uuid.UUID, str]]) -> str:
    """One value for the whole ledger: SHA-256 (hex) over the lines
    "<account_id> <head_hash>\\n" of every account with entries, in ascending account
    id order (UUID text order). Any change to any chain changes its head, and so this."""
    digest = hashlib.sha256()
    for account_id, head in sorted((str(a), h) for a, h in heads):
        digest.update(f"{account_id} {head}\n".encode())
    return digest.hexdigest()
