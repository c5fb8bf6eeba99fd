"""Migration 0015 backfills the hash chain of a ledger written before it: the entries
of real traffic, copied into a database at the revision before 0015, come out of the
upgrade with exactly the hashes the engine gave them, the heads set, the column NOT
NULL, the append-only guard on again, and `verify`'s chain check clean."""

from __future__ import annotations

import psycopg
from alembic import command
from alembic.script import ScriptDirectory

from db.core.config import get_settings
from db.migrate import alembic_config
from tests.fixtures.builders import pending_transfer
from tests.fixtures.infra import scratch_database
from tests.fixtures.ledger import apply_now, ledger_problems, sql

# In foreign-key order: what a ledger's entries need beside them.
TABLES = ("users", "accounts", "balances", "transactions", "ledger_entries")


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _columns(connection: psycopg.Connection, table: str) -> list[str]:
    return [
        name
        for (name,) in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        )
    ]


def _copy_ledger(source_url: str, target_url: str) -> None:
    """Every row of TABLES, in the columns the older schema has."""
    with psycopg.connect(_plain(source_url)) as source, psycopg.connect(_plain(target_url)) as target:
        for table in TABLES:
            columns = ", ".join(_columns(target, table))
            with (
                source.cursor().copy(f"COPY (SELECT {columns} FROM {table}) TO STDOUT") as out,
                target.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as into,
            ):
                for block in out:
                    into.write(block)
        target.commit()


def test_the_backfill_rebuilds_the_chain_the_engine_wrote(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob, balance="7.00")
    for source, target, amount in ((a, b, "30.00"), (b, a, "2.50"), (a, b, "0.01"), (b, a, "9.99")):
        assert (
            apply_now(pending_transfer(alice if source == a else bob, source, target, amount)) == "completed"
        )
    engine_chain = sql("SELECT id, hash, prev_hash FROM ledger_entries ORDER BY id")
    engine_heads = sql("SELECT account_id, head_hash FROM balances ORDER BY account_id")
    assert len(engine_chain) == 12 and ledger_problems() == []

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    before = script.get_revision("0015").down_revision
    with scratch_database("ledgerq_backfill") as url:
        config = alembic_config(url)
        command.upgrade(config, str(before))
        _copy_ledger(get_settings().database_url, url)
        command.upgrade(config, "heads")
        with psycopg.connect(_plain(url)) as upgraded:
            assert upgraded.execute(
                "SELECT id, hash, prev_hash FROM ledger_entries ORDER BY id"
            ).fetchall() == [tuple(row) for row in engine_chain]
            assert upgraded.execute(
                "SELECT account_id, head_hash FROM balances ORDER BY account_id"
            ).fetchall() == [tuple(row) for row in engine_heads]
            nullable = upgraded.execute(
                "SELECT is_nullable FROM information_schema.columns "
                "WHERE table_name = 'ledger_entries' AND column_name = 'hash'"
            ).fetchone()
            assert nullable == ("NO",)
            trigger = upgraded.execute(
                "SELECT tgenabled FROM pg_trigger WHERE tgname = 'ledger_entries_append_only'"
            ).fetchone()
            assert trigger == ("O",)
            leftovers = upgraded.execute(
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'ledgerq_tmp_chain%'"
            )
            assert leftovers.fetchone() == (0,)
