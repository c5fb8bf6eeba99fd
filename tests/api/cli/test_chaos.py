"""`ledgerq chaos`, short mode: random transfers and batches against a real stack of its
own (API, workers, two schedulers, its own embedded Redis, a fresh database on this run's
PostgreSQL server) while workers are SIGKILLed and SIGSTOPped, Redis is restarted and
flushed, the database's connections are terminated and every message is sent twice. The
command's own verdict is the test: it exits 1 if anything was applied twice, was not
final within the bound, was dead-lettered, or if verify found a problem. The long mode is
documented in the README (Reliability)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from api.cli.chaos.tally import Tally
from api.cli.up import PROCFILE
from db.core.config import get_settings

# The faults' kinds follow from the seed alone (api/cli/chaos/faults.py draws the wait and
# then the kind); with a fault every ~2 s, seed 256 kills a worker at ~4 s, freezes one at
# ~6 s and restarts Redis at ~8 s of the 15 s of load (then terminates connections), all
# well inside the window; its one kill comes early, so the group the supervisor restarts
# is up long before the stack is stopped. Seed 11 with 30 s of load (the run before) drew
# no freeze and no Redis restart, and took ~15 s longer.
SEED = 256


def test_short_chaos_run_loses_and_doubles_nothing():
    env = {
        **os.environ,
        "DATABASE_URL": get_settings().database_url,
        # The stack's processes import this checkout (not only the installed one).
        "PYTHONPATH": str(PROCFILE.parent),
    }
    env.pop("REDIS_URL", None)  # chaos always runs its own Redis; never the shared one
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from api.cli import main; main()",
            "chaos",
            "--seconds",
            "15",
            "--fault-every",
            "2",
            "--seed",
            str(SEED),
        ],
        cwd=PROCFILE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    assert "verdict: PASS" in out, out
    accepted = int(re.search(r"accepted: (\d+)", out).group(1))
    faults = int(re.search(r"faults injected: (\d+)", out).group(1))
    assert accepted > 200 and faults >= 3, out
    injected = dict(re.findall(r"(\w+) (\d+)", re.search(r"faults injected: \d+ \((.*)\)", out).group(1)))
    assert {"kill_worker", "stop_worker", "restart_redis"} <= set(injected), out
    assert re.search(r"process restarts: .*worker \d+", out), ("the killed worker group was restarted", out)
    assert "applied twice: 0" in out and "dead-lettered: 0" in out and "still pending: 0 " in out, out


def test_the_verdict_fails_on_each_broken_promise():
    assert Tally().verdict() == []
    assert Tally(applied_twice=1).verdict() == ["1 transactions applied twice"]
    pending = Tally()
    pending.statuses["pending"] = 2
    assert pending.verdict() == ["2 transactions and 0 batches not final in time"]
    dead = Tally()
    dead.statuses["dead_lettered"] = 1
    assert dead.verdict() == ["1 dead-lettered by transient faults"]
    assert Tally(problems=["sums: USD off by 1"]).verdict() == ["verify: 1 problems"]
