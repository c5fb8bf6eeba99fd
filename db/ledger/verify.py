"""`ledgerq verify`: the invariants of DESIGN.md, checked in SQL against the live data.

Each check returns human-readable problems; an empty list means the ledger is sound.
`verify_ledger` prefixes each problem with the name of the check that found it.
"""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.analytics.verify import check_analytics_rollups
from db.core.currencies import CURRENCY_EXPONENTS
from db.core.money import format_minor
from db.events.verify import check_final_transactions_announced
from db.holds import verify as holds_verify
from db.ledger.hash_chain import SQL_ENTRY_HASH

# Invariant 6 is about liveness: a row pending this long since it became due (created,
# or released at its scheduled_for) means nothing is applying it. Not `updated_at`: the
# sweeper re-enqueues and touches a row it cannot get applied, which hid it forever.
STUCK_PENDING_AFTER = "1 hour"
# The database's guards of invariant 5 (migrations 0001 and 0007): (table, trigger).
GUARD_TRIGGERS = tuple(
    (table, f"{table}_{kind}")
    for table in ("ledger_entries", "audit_logs")
    for kind in ("append_only", "no_truncate")
)


def _rows(session: Session, sql: str):
    return session.execute(text(sql)).all()


def check_currency_sums(session: Session) -> list[str]:
    return [
        f"currency {currency}: balances sum to {format_minor(total, currency)}, not 0"
        for currency, total in _rows(
            session,
            "SELECT currency, SUM(balance_minor) FROM balances GROUP BY currency HAVING SUM(balance_minor) <> 0",
        )
    ]


def check_balances_match_entries(session: Session) -> list[str]:
    return [
        f"account {account_id}: balance {format_minor(balance, currency)} but entries sum to "
        f"{format_minor(entries, currency)}"
        for account_id, currency, balance, entries in _rows(
            session,
            """
            SELECT b.account_id, b.currency, b.balance_minor, COALESCE(SUM(e.amount_minor), 0)
            FROM balances b LEFT JOIN ledger_entries e ON e.account_id = b.account_id
            GROUP BY b.account_id, b.currency, b.balance_minor
            HAVING b.balance_minor <> COALESCE(SUM(e.amount_minor), 0)
            """,
        )
    ]


def check_running_balances(session: Session) -> list[str]:
    return [
        f"ledger entry {entry_id} (account {account_id}): balance_after {after} but running sum is {running}"
        for entry_id, account_id, after, running in _rows(
            session,
            """
            SELECT id, account_id, balance_after_minor, running FROM (
                SELECT id, account_id, balance_after_minor,
                       SUM(amount_minor) OVER (PARTITION BY account_id ORDER BY id) AS running
                FROM ledger_entries) t
            WHERE balance_after_minor <> running
            LIMIT 100
            """,
        )
    ]


def check_entries_per_transaction(session: Session) -> list[str]:
    return [
        f"transaction {tx_id} ({status}): {count} entries summing to {total}"
        + ("" if currency_ok else ", in the wrong currency")
        for tx_id, status, count, total, currency_ok in _rows(
            session,
            """
            SELECT t.id, t.status, COUNT(e.id), COALESCE(SUM(e.amount_minor), 0),
                   BOOL_AND(e.currency IS NULL OR e.currency = t.currency)
            FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
            WHERE t.to_currency IS NULL  -- exchanges: check_exchange_entries
            GROUP BY t.id, t.status
            HAVING (t.status = 'completed' AND (COUNT(e.id) <> 2 OR SUM(e.amount_minor) <> 0
                        OR MAX(e.amount_minor) <> MAX(t.amount_minor)))
                OR (t.status <> 'completed' AND COUNT(e.id) <> 0)
                OR NOT BOOL_AND(e.currency IS NULL OR e.currency = t.currency)
            LIMIT 100
            """,
        )
    ]


def check_entries_follow_transactions(session: Session) -> list[str]:
    """A completed transaction takes its amount from `from_account_id` and gives it to
    `to_account_id`: swapped signs, or a third account, balance to zero just as well."""
    return [
        f"transaction {tx_id} ({kind}): its entries do not take {amount} minor units from "
        f"{source} and give them to {target}"
        for tx_id, kind, amount, source, target in _rows(
            session,
            """
            SELECT t.id, t.type, t.amount_minor, t.from_account_id, t.to_account_id
            FROM transactions t
            WHERE t.status = 'completed' AND t.to_currency IS NULL AND (
                NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id
                            AND e.account_id = t.from_account_id AND e.amount_minor = -t.amount_minor)
                OR NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id
                            AND e.account_id = t.to_account_id AND e.amount_minor = t.amount_minor)
                OR EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id
                            AND e.account_id NOT IN (t.from_account_id, t.to_account_id)))
            LIMIT 100
            """,
        )
    ]


def check_allow_negative_only_on_system_accounts(session: Session) -> list[str]:
    # The overdraft CHECK is `allow_negative OR balance >= -overdraft_limit`: the flag on a
    # user account switches that guard off.
    return [
        f"account {account_id} ({kind}): allow_negative is set on a non-system account"
        for account_id, kind in _rows(
            session,
            """
            SELECT b.account_id, a.kind FROM balances b JOIN accounts a ON a.id = b.account_id
            WHERE b.allow_negative AND a.kind <> 'system'
            """,
        )
    ]


def check_no_overdrawn_accounts(session: Session) -> list[str]:
    # Only the current balance against the current floor: finance may lower an overdraft
    # limit once the balance is back above the new floor, so an old entry's balance_after
    # below today's floor is history, not corruption. Every past balance was held to the
    # floor of its time by the CHECK on `balances`, and check_running_balances ties each
    # entry's balance_after to the balances that CHECK saw.
    return [
        f"account {account_id}: balance {format_minor(balance, currency)} is below its overdraft limit"
        for account_id, currency, balance in _rows(
            session,
            """
            SELECT account_id, currency, balance_minor FROM balances
            WHERE NOT allow_negative AND balance_minor < -overdraft_limit_minor
            """,
        )
    ]


def check_append_only_triggers(session: Session) -> list[str]:
    # Present is not enough: ALTER TABLE ... DISABLE TRIGGER keeps it in pg_trigger with
    # tgenabled = 'D' ('R': fires only in replica sessions, so not for the application).
    state = {
        (table, name): enabled
        for table, name, enabled in _rows(
            session,
            "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal",
        )
    }
    problems = []
    for table, name in GUARD_TRIGGERS:
        enabled = state.get((table, name))
        if enabled is None:
            problems.append(f"trigger {name} is missing: {table} can be changed")
        elif enabled not in ("O", "A"):
            problems.append(f"trigger {name} is disabled: {table} can be changed")
    return problems


def check_nothing_stuck(session: Session) -> list[str]:
    return [
        f"{count} pending transaction(s) due for over {STUCK_PENDING_AFTER} and still not applied (are workers and the scheduler running?)"
        for (count,) in _rows(
            session,
            f"SELECT COUNT(*) FROM transactions WHERE status = 'pending' "
            f"AND GREATEST(created_at, COALESCE(scheduled_for, created_at)) < now() - interval '{STUCK_PENDING_AFTER}' "
            "HAVING COUNT(*) > 0",
        )
    ]


def check_entries_sum_to_zero_per_currency(session: Session) -> list[str]:
    """The entries of every transaction, whatever its type, sum to zero in each currency."""
    return [
        f"transaction {tx_id}: its {currency} entries sum to {format_minor(total, currency)}, not 0"
        for tx_id, currency, total in _rows(
            session,
            "SELECT transaction_id, currency, SUM(amount_minor) FROM ledger_entries "
            "GROUP BY transaction_id, currency HAVING SUM(amount_minor) <> 0 LIMIT 100",
        )
    ]


# What an exchange (or its reversal) posts, from its own figures (db/ledger/posting/exchange.py):
# the source, the target, the fx account of each currency and, with a fee, the fees account.
_EXCHANGE_LINES = """
    WITH x AS (
        SELECT t.*, (t.type = 'exchange') AS forward,
               CASE WHEN t.type = 'exchange' THEN t.currency ELSE t.to_currency END AS fee_currency
        FROM transactions t WHERE t.to_currency IS NOT NULL AND t.status = 'completed'
    ), sys AS (SELECT id, currency, system_role FROM accounts WHERE kind = 'system')
    SELECT x.id, x.from_account_id, -x.amount_minor, x.currency FROM x
    UNION ALL SELECT x.id, x.to_account_id, x.to_amount_minor, x.to_currency FROM x
    UNION ALL SELECT x.id, s.id, CASE WHEN forward THEN x.amount_minor - x.fee_minor ELSE x.amount_minor END,
                     x.currency
              FROM x JOIN sys s ON s.currency = x.currency AND s.system_role = 'fx'
    UNION ALL SELECT x.id, s.id, CASE WHEN forward THEN -x.to_amount_minor
                                      ELSE -(x.to_amount_minor - x.fee_minor) END, x.to_currency
              FROM x JOIN sys s ON s.currency = x.to_currency AND s.system_role = 'fx'
    UNION ALL SELECT x.id, s.id, CASE WHEN forward THEN x.fee_minor ELSE -x.fee_minor END, x.fee_currency
              FROM x JOIN sys s ON s.currency = x.fee_currency AND s.system_role = 'fees'
              WHERE x.fee_minor > 0
"""


def check_exchange_entries(session: Session) -> list[str]:
    """A completed exchange has exactly its lines (a pair per currency through the `fx`
    accounts, the fee to `fees`); any other status has none."""
    return [
        f"transaction {tx_id} (exchange): its entries are not the exchange's legs"
        for (tx_id,) in _rows(
            session,
            f"""
            WITH expected AS ({_EXCHANGE_LINES}),
            actual AS (
                SELECT e.transaction_id, e.account_id, e.amount_minor, e.currency
                FROM ledger_entries e JOIN transactions t ON t.id = e.transaction_id
                WHERE t.to_currency IS NOT NULL)
            SELECT DISTINCT d.id FROM (
                (SELECT * FROM expected EXCEPT ALL SELECT * FROM actual)
                UNION ALL (SELECT * FROM actual EXCEPT ALL SELECT * FROM expected)) AS d (id, a, m, c)
            LIMIT 100
            """,
        )
    ]


def check_exchange_quotes(session: Session) -> list[str]:
    """Every exchange applied its rate version's pair, rate and fee, and its figures follow
    the contract: fee = floor(amount x fee_bps / 10000), to_amount = floor((amount - fee) x
    rate) between the two exponents."""
    exponents = json.dumps(CURRENCY_EXPONENTS)
    return [
        f"transaction {tx_id} (exchange): its figures do not follow rate version {version}"
        for tx_id, version in session.execute(
            text(
                """
                SELECT t.id, t.fx_rate_version_id FROM transactions t
                JOIN fx_rate_versions v ON v.id = t.fx_rate_version_id
                WHERE t.type = 'exchange' AND (
                    v.base <> t.currency OR v.quote <> t.to_currency OR v.rate <> t.fx_rate
                    OR t.fee_minor <> floor(t.amount_minor::numeric * v.fee_bps / 10000)
                    OR t.to_amount_minor <> floor((t.amount_minor - t.fee_minor) * v.rate
                        * power(10::numeric, (CAST(:e AS jsonb) ->> t.to_currency)::int
                                           - (CAST(:e AS jsonb) ->> t.currency)::int)))
                LIMIT 100
                """
            ),
            {"e": exponents},
        ).all()
    ]


# One pass over ledger_entries in (account_id, id) order, streamed by the server: each
# entry's hash recomputed from its own columns, and its prev_hash compared with the hash
# of the entry before it on the account; then each account's first broken link, and every
# balance row whose head_hash is not its last entry's hash.
HASH_CHAIN_SQL = f"""
WITH chain AS (
    SELECT id, account_id, hash, prev_hash,
           {SQL_ENTRY_HASH} AS recomputed,
           LAG(id) OVER w AS before_id, LAG(hash) OVER w AS before_hash
    FROM ledger_entries WINDOW w AS (PARTITION BY account_id ORDER BY id)
), broken AS (
    SELECT DISTINCT ON (account_id) account_id, id, before_id, hash <> recomputed AS edited
    FROM chain WHERE hash <> recomputed OR prev_hash IS DISTINCT FROM before_hash
    ORDER BY account_id, id
), heads AS (
    SELECT b.account_id, last.id
    FROM balances b
    LEFT JOIN (SELECT DISTINCT ON (account_id) account_id, id, hash FROM ledger_entries
               ORDER BY account_id, id DESC) AS last ON last.account_id = b.account_id
    WHERE b.head_hash IS DISTINCT FROM last.hash
)
SELECT 'link', account_id, id, before_id, edited FROM broken
UNION ALL
SELECT 'head', account_id, id, NULL, NULL FROM heads
ORDER BY 2, 1 DESC
LIMIT 100
"""


def _broken_link(kind: str, account_id, entry_id, before_id, edited) -> str:
    if kind == "head":
        last = f"its last entry {entry_id}" if entry_id is not None else "no entry (it has none)"
        return (
            f"account {account_id}: head_hash on the balance row is not the hash of {last} "
            "(entries deleted from or added to the end of the chain)"
        )
    if edited:
        return (
            f"account {account_id}: first broken link at entry {entry_id}: its hash does not match its "
            "contents (id, transaction, account, amount, currency, balance_after or created_at edited)"
        )
    before = f"entry {before_id} before it" if before_id is not None else "no entry (it is the first)"
    return (
        f"account {account_id}: first broken link at entry {entry_id}: its prev_hash is not the hash of "
        f"{before} (an entry deleted, inserted or edited before it)"
    )


def check_hash_chain(session: Session) -> list[str]:
    """The tamper-evident ledger (db/ledger/hash_chain.py): every account's chain
    recomputed, the first broken link of each account named."""
    return [_broken_link(*row) for row in _rows(session, HASH_CHAIN_SQL)]


def check_ledger_anchor(session: Session) -> list[str]:
    """The latest daily anchor (db/ledger/anchor.py) still matches the entries: the heads
    as of its last entry id, recomputed, hash to the anchored digest."""
    from db.ledger import anchor

    found = anchor.latest(session)
    if found is None:
        return []
    digest, accounts = anchor.recompute(session, int(found.data["last_entry_id"]))
    if digest == found.data["digest"]:
        return []
    return [
        f"anchor of {found.entity_id}: the chain heads as of entry {found.data['last_entry_id']} "
        f"({accounts} accounts) hash to {digest}, not the anchored {found.data['digest']} "
        "(history before the anchor was rewritten)"
    ]


CHECKS = (
    check_currency_sums,
    check_balances_match_entries,
    check_running_balances,
    check_entries_per_transaction,
    check_entries_follow_transactions,
    check_entries_sum_to_zero_per_currency,
    check_exchange_entries,
    check_exchange_quotes,
    check_allow_negative_only_on_system_accounts,
    check_no_overdrawn_accounts,
    check_append_only_triggers,
    check_nothing_stuck,
    check_final_transactions_announced,
    *holds_verify.CHECKS,
    check_analytics_rollups,
    check_hash_chain,
    check_ledger_anchor,
)


def verify_ledger(session: Session) -> list[str]:
    problems: list[str] = []
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        problems.extend(f"{name}: {problem}" for problem in check(session))
    return problems
