"""`ledgerq bench analytics`: the plumbing, never its speed. The smallest run loads its
transactions with the triggers live and must find the rollups equal to a direct count
(the verify check it runs), every call answered 200, every figure with its baseline."""

from __future__ import annotations

import pytest

from tests.fixtures.processes import run_bench


@pytest.mark.slow
def test_smallest_analytics_run_agrees_with_a_direct_count_and_divides_by_its_baselines(tmp_path):
    document = run_bench(
        tmp_path,
        "analytics",
        "--analytics-transactions",
        "3000",
        "--analytics-calls",
        "3",
        "--pgbench-seconds",
        "1",
        "--pgbench-scale",
        "1",
        timeout=300,
    )
    scenario = document["scenarios"]["analytics"]
    assert scenario["details"]["verify_check"] == "OK"
    assert scenario["details"]["rows"]["transactions"] > 2000
    assert scenario["details"]["rows"]["ledger_entries"] > 0
    assert scenario["baselines"]["select"]["value"] > 0
    figures = scenario["figures"]
    assert {"hot account, 366 days p99", "daily, 366 days, all currencies p50"} <= set(figures)
    for name, figure in figures.items():
        assert figure["value"] > 0 and figure["ratio"] is not None, name
        assert figure["ratio"] == pytest.approx(
            figure["value"] / scenario["baselines"][figure["baseline"]]["value"]
        ), name
