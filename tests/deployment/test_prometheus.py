"""deployment/prometheus/: the alert rules load, behave as their tests say, and each
has a runbook in deployment/README.md; the scrape configuration loads."""

from __future__ import annotations

import re

import yaml

from tests.deployment.tools import DEPLOYMENT, require, run

PROMETHEUS = DEPLOYMENT / "prometheus"


def _alerts() -> list[dict]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_alert_rules_pass_promtool_check():
    promtool = require("promtool", "prometheus")
    result = run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_alert_rule_unit_tests_pass():
    promtool = require("promtool", "prometheus")
    result = run([promtool, "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts.test.yml").read_text()))
    assert len(tested) >= 2


def test_prometheus_config_passes_promtool_check():
    promtool = require("promtool", "prometheus")
    result = run([promtool, "check", "config", "prometheus.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_issue_asks_for_these_alerts():
    names = {rule["alert"] for rule in _alerts()}
    assert {
        "LedgerqDeadLettersGrowing",
        "LedgerqOldestPendingTooOld",
        "LedgerqQueueBacklog",
        "LedgerqHigh5xxRate",
        "LedgerqNoSchedulerLeader",
        "LedgerqTwoSchedulerLeaders",
        "LedgerqSchedulerLagging",
        "LedgerqBatchStalled",
        "LedgerqWebhookDeliveriesFailing",
    } <= names


def test_every_alert_has_a_runbook_in_the_deployment_readme():
    readme = (DEPLOYMENT / "README.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in readme.splitlines()
        if line.startswith("#")
    }
    for rule in _alerts():
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook_url"] == f"deployment/README.md#{anchor}", rule["alert"]
        assert anchor in headings, f"deployment/README.md has no '### {rule['alert']}' runbook"
        section = readme.split(f"### {rule['alert']}", 1)[1].split("\n#", 1)[0]
        assert len(section.split()) > 30, f"the runbook of {rule['alert']} says too little"
