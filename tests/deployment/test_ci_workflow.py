""".github/workflows/ci.yml: a valid GitHub Actions workflow that runs exactly what
`.ci/run` runs, with PostgreSQL and Redis as service containers."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tests.deployment.tools import REPO, run

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def _workflow() -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    return yaml.safe_load(WORKFLOW.read_text())


def test_workflow_passes_the_github_workflow_schema():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = run([str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_the_ci_script_with_postgres_and_redis():
    (job,) = _workflow()["jobs"].values()
    commands = [step.get("run", "") for step in job["steps"]]
    assert "bash .ci/run" in commands
    assert (REPO / ".ci" / "run").exists()
    services = job["services"]
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["ports"] == ["5432:5432"] and redis["ports"] == ["6379:6379"]
    assert (
        postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
        and postgres["env"]["POSTGRES_USER"] == "postgres"
    )
    for service in (postgres, redis):
        assert "--health-cmd" in service["options"]
        assert any(char.isdigit() for char in service["image"].split(":")[1])  # pinned
    # The tools the deployment tests need, installed since GitHub's runner is not root.
    installs = " ".join(commands)
    for package in ("prometheus", "nginx", "systemd", "postgresql-client"):
        assert package in installs, package
    assert job["timeout-minutes"] <= 90
