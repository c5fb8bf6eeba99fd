"""The posting engine: the only code that moves money.

`rules` holds every money rule (pure decisions against locked rows); `engine` locks an
account set once, decides items in order in memory and flushes them in bulk;
`transfers` is its caller for transaction rows (one, or a worker's claimed group).
Batch chunks (`db.batches.posting`) call the engine too."""

from db.ledger.posting.engine import Decided, LedgerCorrupted, Posting, post
from db.ledger.posting.rules import Decision, decide
from db.ledger.posting.transfers import Outcome, apply_group, apply_transaction

__all__ = [
    "Decided",
    "Decision",
    "LedgerCorrupted",
    "Outcome",
    "Posting",
    "apply_group",
    "apply_transaction",
    "decide",
    "post",
]
