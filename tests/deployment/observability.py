"""What the dashboards and alert rules query: metric names per Prometheus job.

Shared by the Grafana and Prometheus tests. Names are taken from the PromQL text: every
identifier of ours (`ledgerq_*`, `dramatiq_*`, `process_*`), with the job its selector
names, if any. A histogram's `_bucket`/`_sum`/`_count` and a counter's `_total` are
sample names, which is what a scrape shows, so they are compared as written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.deployment.tools import DEPLOYMENT

JOBS = ("ledgerq-web", "ledgerq-worker", "ledgerq-scheduler")
_NAME = re.compile(r"\b((?:ledgerq|dramatiq|process)_[a-zA-Z0-9_]+)\b(\{[^}]*\})?")
_JOB = re.compile(r'job="(ledgerq-[a-z]+)"')


def dashboard_files() -> list[Path]:
    return sorted((DEPLOYMENT / "grafana" / "dashboards").glob("*.json"))


def dashboard_queries() -> dict[str, str]:
    """'<file>: <panel title>' -> PromQL, for every target of every dashboard."""
    queries = {}
    for path in dashboard_files():
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries[f"{path.name}: {panel['title']} [{target['refId']}]"] = target["expr"]
    return queries


def alert_queries() -> dict[str, str]:
    document = yaml.safe_load((DEPLOYMENT / "prometheus" / "alerts.yml").read_text())
    return {
        f"alerts.yml: {rule['alert']}": rule["expr"]
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def metric_uses(expr: str) -> set[tuple[str, str | None]]:
    """(sample name, job or None) for every metric the expression reads."""
    uses = set()
    for match in _NAME.finditer(expr):
        job = _JOB.search(match.group(2) or "")
        uses.add((match.group(1), job.group(1) if job else None))
    return uses
