"""An idle stack is quiet: a real worker group and scheduler (whose periodic jobs send
maintenance messages every second) write no warning or error while nothing happens.
Dramatiq warned about every actor that returned a value, ~70 lines a minute."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from db.ops.embedded import free_port
from tests.fixtures.processes import LEDGERQ, Processes, wait_for

pytestmark = pytest.mark.slow

IDLE_SECONDS = 12


def _lines(text: str) -> list[dict]:
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"level": "unstructured", "event": raw})
    return lines


def _processed(port: int, actor: str) -> float:
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "dramatiq_messages_total" and sample.labels.get("actor_name") == actor
    )


def test_an_idle_worker_and_scheduler_write_no_warnings(tmp_path):
    processes = Processes(tmp_path)
    try:
        metrics_port = free_port()
        processes.start(
            "worker",
            [LEDGERQ, "worker", "--processes", "1", "--threads", "2", "--metrics-port", str(metrics_port)],
        )
        processes.start("scheduler", [LEDGERQ, "scheduler"], env={"SCHEDULER_METRICS_PORT": str(free_port())})
        wait_for(
            "the scheduler to lead and the worker to be ready",
            lambda: (
                "scheduler.leader_elected" in processes.logs_text("scheduler")
                and "ready for action" in processes.logs_text("worker")
            ),
            90,
        )
        time.sleep(IDLE_SECONDS)
        text = processes.logs_text("worker") + processes.logs_text("scheduler")
        loud = [line for line in _lines(text) if line.get("level") not in ("debug", "info")]
        assert loud == [], loud[:5]
        # ...while the periodic maintenance messages really were processed.
        assert _processed(metrics_port, "batches.release_due") >= IDLE_SECONDS // 2
    finally:
        processes.kill_all()
