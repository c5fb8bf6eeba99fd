"""`ledgerq bench`: the plumbing (stack, baselines, load, JSON), never its speed.

The smoke runs the smallest `apply` and `floor` there are (a tiny backlog, a 1-second pgbench) as an
operator would, in a separate process, and checks the JSON has every field a reader of
the results needs. The shipped set-based posting script is checked to keep the ledger
sound, since it is the ceiling batches are compared to."""

from __future__ import annotations

import os

import pytest

from api.cli.bench import load
from api.cli.bench.baseline import Baselines, Pgbench, find_pgbench
from api.cli.bench.report import Outcome
from api.cli.bench.stack import FLOOR_APP, WEB_APP
from api.cli.bench.stats import percentiles, trend
from api.cli.up import PROCFILE, read_procfile
from db.core.config import get_settings
from tests.fixtures.processes import run_bench


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentiles(values) == {"p50": 50, "p95": 95, "p99": 99}
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_trend_tells_growth_from_noise():
    noisy_flat = [(t, 100 + (5 if t % 2 else -5)) for t in range(60)]
    leaking = [(t, 100 + 0.5 * t) for t in range(60)]
    one_spike = [(t, 100 + (50 if t == 30 else 0)) for t in range(60)]
    assert trend(noisy_flat, tolerance=8)["verdict"] == "flat"
    assert trend(leaking, tolerance=8)["verdict"] == "growing"
    assert trend(one_spike, tolerance=8)["verdict"] == "flat"
    assert trend([(0, 1), (1, 2)], tolerance=1)["verdict"] == "too few samples"


def test_split_shares_threads_rate_count_and_users_without_losing_any():
    users = [load.User(f"t{n}", [f"a{n}"]) for n in range(5)]
    job = load.Job(base_url="http://x", kind="transfer", users=users, threads=7, rate=70.0, count=101)
    parts = load.split(job, 2)
    assert [p.threads for p in parts] == [4, 3]
    assert sum(p.count or 0 for p in parts) == 101
    assert sum(p.rate or 0 for p in parts) == pytest.approx(70.0)
    assert sorted(u.token for p in parts for u in p.users) == sorted(u.token for u in users)
    assert len({p.seed for p in parts}) == 2


def test_a_figure_is_divided_by_its_own_baseline():
    out = Outcome("x", baselines={"tpcb": {"name": "TPC-B-like", "tps": 4000.0}, "alone": {"value": 20.0}})
    assert out.add("accepted/s", 1000.0, "/s", "tpcb").ratio == pytest.approx(0.25)
    assert out.add("p99 with waiters", 30.0, "ms", "alone").ratio == pytest.approx(1.5)
    assert out.add("p50", 12.0, "ms").ratio is None
    assert out.add("nothing measured", None, "/s", "tpcb").ratio is None
    assert out.as_dict()["ratios"] == {
        "accepted/s": pytest.approx(0.25),
        "p99 with waiters": pytest.approx(1.5),
    }


def test_setbased_script_posts_whole_transfers_and_keeps_the_ledger_sound(make):
    """The baseline batches are compared to must do the real work: every transfer
    written with both entries, balances moved by exactly those entries."""
    from sqlalchemy import text

    from db.ledger.verify import verify_ledger
    from db.session import get_engine, unit_of_work

    binary = find_pgbench()
    assert binary, "pgbench ships with the pgserver dependency; find_pgbench must find one"
    finance = make.user("finance")
    # A pgbench transaction moves ~100 x 5,000.00 on average: funded for thousands of
    # them, so a fast machine's second of pgbench never runs a payer dry (it did with
    # 1,000,000.00 each: ck_balances_within_overdraft, and the test failed by speed).
    payers = [make.account(finance, balance="900000000.00") for _ in range(3)]
    payees = [make.account(finance) for _ in range(40)]
    baselines = Baselines(Pgbench(binary), "unused", seconds=1, scale=1)
    try:
        result = baselines.setbased(
            get_settings().database_url, payers=payers, payees=payees, user_id=finance.id, clients=2, size=100
        )
        assert result["transactions"] > 0 and result["failed"] == 0
        assert result["transfers_per_s"] == pytest.approx(result["tps"] * 100)
        with get_engine().begin() as connection:
            posted = connection.execute(
                text("SELECT count(*) FROM transactions WHERE type = 'transfer' AND status = 'completed'")
            ).scalar_one()
            entries = connection.execute(
                text(
                    "SELECT count(*) FROM ledger_entries e JOIN transactions t ON t.id = e.transaction_id "
                    "WHERE t.type = 'transfer'"
                )
            ).scalar_one()
    finally:
        # Also when it fails: left behind, they break the models-match-migrations checks.
        with get_engine().begin() as connection:
            for table in ("bench_payers", "bench_payees", "bench_meta"):
                connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    assert posted == 100 * result["transactions"]
    assert entries == 2 * posted
    with unit_of_work() as uow:
        problems = verify_ledger(uow.session)
    # The baseline writes a placeholder hash (setbased.sql: it measures the set-based
    # posting with rows as wide as the engine's, not the chain), so only the hash chain
    # of the bench's own accounts may be reported; every money invariant must hold.
    assert [p for p in problems if not p.startswith("hash_chain: ")] == []


@pytest.mark.slow
def test_smallest_apply_run_writes_every_field_of_the_json(tmp_path):
    document = run_bench(
        tmp_path,
        "apply",
        "--quick",
        "--backlog",
        "20",
        "--users",
        "2",
        "--pgbench-seconds",
        "1",
        # As on a fresh machine: no LEDGERQ_ENV (production by default), no JWT_SECRET.
        env={
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("LEDGERQ_ENV", "JWT_SECRET", "JWT_SECRET_FILE")
            },
            "LOG_FORMAT": "json",
        },
    )
    assert set(document) >= {"date", "git", "machine", "servers", "options", "stack_settings", "scenarios"}
    assert len(document["git"]["commit"]) == 40
    assert document["machine"]["cpus"] >= 1
    assert document["servers"]["pgbench"].startswith("pgbench")
    apply = document["scenarios"]["apply"]
    tpcb = apply["baselines"]["tpcb"]
    assert tpcb["tps"] > 0 and tpcb["clients"] == 8
    applied = apply["figures"]["applied/s"]
    assert applied["baseline"] == "tpcb" and applied["value"] > 0  # the backlog drained
    assert apply["ratios"]["applied/s"] == pytest.approx(applied["value"] / tpcb["tps"])
    assert apply["details"]["statuses"] == {"completed": 20}
    assert apply["details"]["ledger_verify"] == "OK"
    assert "worker" in apply["details"]["commands"]


@pytest.mark.slow
def test_the_floor_serves_the_same_requests_as_the_api_from_the_web_command(tmp_path):
    """`bench floor`: the web process's gunicorn command serving the floor app, answering
    the load generator's transfers with 202 and its reads of them with 200, every one."""
    document = run_bench(tmp_path, "floor", "--quick", "--users", "2", "--pgbench-seconds", "1")
    floor = document["scenarios"]["floor"]
    web = read_procfile(PROCFILE)["web"]
    assert floor["details"]["commands"]["floor"].startswith(web.replace(WEB_APP, FLOOR_APP))
    assert floor["figures"]["accepted/s"]["value"] > 0
    assert set(floor["details"]["requests"]["statuses"]) == {"202"}
    assert set(floor["details"]["get"]["statuses"]) == {"200"}
    assert floor["ratios"]["accepted/s"] == pytest.approx(
        floor["figures"]["accepted/s"]["value"] / floor["baselines"]["tpcb"]["tps"]
    )
