"""deployment/grafana/: dashboards as code, provisioning that points at them, and
PromQL that Prometheus parses. (Whether the metrics exist: test_exported_metrics.py.)"""

from __future__ import annotations

import importlib.util
import json

import yaml

from tests.deployment.observability import dashboard_files, dashboard_queries, metric_uses
from tests.deployment.tools import DEPLOYMENT, require, run

GRAFANA = DEPLOYMENT / "grafana"


def _generator():
    spec = importlib.util.spec_from_file_location("ledgerq_dashboards", GRAFANA / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_files_are_what_dashboards_py_generates():
    rendered = _generator().render()
    on_disk = {path.name: path.read_text() for path in dashboard_files()}
    assert set(on_disk) == set(rendered), "run: python deployment/grafana/dashboards.py"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run python deployment/grafana/dashboards.py"


def test_the_issue_asks_for_these_dashboards():
    titles = {json.loads(path.read_text())["uid"] for path in dashboard_files()}
    assert titles == {"ledgerq-api", "ledgerq-workers", "ledgerq-business", "ledgerq-webhooks"}
    panels = " | ".join(dashboard_queries())
    for wanted in (
        "by route",
        "Retries",
        "Dead letters",
        "Queue depth",
        "Oldest pending",
        "Apply latency",
        "by currency",
        "Failed / s by code",
        "batches",
        "Leader",
        "Lag",
        "Attempts / s by outcome",
        "Attempt latency",
        "Oldest undelivered",
        "circuit state",
    ):
        assert wanted.lower() in panels.lower(), wanted


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ledgerq.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/grafana/dashboards"
    compose = (DEPLOYMENT / "docker-compose.yml").read_text()
    assert "./grafana/dashboards:/etc/grafana/dashboards:ro" in compose
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in compose
    for path in dashboard_files():
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}, panel["title"]


def test_every_dashboard_query_names_its_job():
    for where, expr in dashboard_queries().items():
        for name, job in metric_uses(expr):
            assert job or name == "ledgerq_build_info", f"{where}: {name} without a job selector"


def test_every_dashboard_query_is_valid_promql(tmp_path):
    promtool = require("promtool", "prometheus")
    rules = [
        {"record": f"ledgerq:dashboard_query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_queries().values())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
