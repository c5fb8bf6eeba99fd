"""Every file under deployment/ is checked by some test: this module maps each one to
the test that checks it (and fails on a file nobody checks), and checks the prose and
the example settings itself: links resolve, every variable named is a real setting."""

from __future__ import annotations

import re
import subprocess
import sys
from fnmatch import fnmatch

import pytest

from tests.deployment.tools import DEPLOYMENT, REPO

CHECKED_BY = {
    "README.md": "tests/deployment/test_prometheus.py (runbooks), this module (links, variables)",
    "*.md": "this module (links, variables)",
    ".env.example": "this module",
    "Dockerfile": "tests/deployment/test_compose.py",
    "Dockerfile.dockerignore": "tests/deployment/test_compose.py",
    "docker-compose.yml": "tests/deployment/test_compose.py",
    "compose/*": "tests/deployment/test_compose.py",
    "kubernetes/*.yaml": "tests/deployment/test_kubernetes.py",
    "systemd/*.service": "tests/deployment/test_systemd.py",
    "prometheus/*": "tests/deployment/test_prometheus.py, test_exported_metrics.py",
    "grafana/dashboards.py": "tests/deployment/test_grafana.py",
    "grafana/dashboards/*.json": "tests/deployment/test_grafana.py, test_exported_metrics.py",
    "grafana/provisioning/*/*.yml": "tests/deployment/test_grafana.py",
    "bench/batch_bench.py": "this module (it runs; the benchmark itself is not a test)",
}
PREFIXES = ("LEDGERQ_", "WORKER_", "SCHEDULER_", "SCHEDULE_", "SWEEPER_", "BROKER_")


def _files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "deployment"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [path.removeprefix("deployment/") for path in listed]


def _settings_names() -> set[str]:
    from db.core.config import Settings

    return {(field.alias or name).upper() for name, field in Settings.model_fields.items()}


def _other_variables() -> set[str]:
    """Variables that are not settings: the compose file's own (ports, image tag) and
    those the CLI reads through click (LEDGERQ_TOKEN, ...)."""
    compose = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOYMENT / "docker-compose.yml").read_text()))
    cli = {
        name
        for path in (REPO / "api" / "cli").rglob("*.py")
        for name in re.findall(r'envvar="([A-Z_]+)"', path.read_text())
    }
    return compose | cli


def test_every_deployment_file_is_checked_by_some_test():
    files = _files()
    assert "docker-compose.yml" in files
    unchecked = [path for path in files if not any(fnmatch(path, pattern) for pattern in CHECKED_BY)]
    assert unchecked == [], "add a check for these files (and list it in CHECKED_BY)"
    for checker in CHECKED_BY.values():
        for module in re.findall(r"tests/\S+?\.py", checker):
            assert (REPO / module).exists(), module


@pytest.mark.parametrize("doc", sorted(DEPLOYMENT.glob("*.md")) + [REPO / "README.md"], ids=lambda p: p.name)
def test_docs_link_to_files_that_exist_and_name_real_settings(doc):
    text = doc.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        path = (doc.parent / target).resolve()
        if "://" not in target and path.is_relative_to(REPO):  # ../shared/ lies beside the repo
            assert path.exists(), f"{doc.name}: broken link {target}"
    known = _settings_names() | _other_variables()
    pattern = r"\b((?:" + "|".join(PREFIXES) + r")[A-Z0-9_]+)\b"
    for name in set(re.findall(pattern, text)):
        if name.endswith("_"):
            continue  # a family: LEDGERQ_RATE_LIMIT_*
        assert name in known or name.removesuffix("_FILE") in known, f"{doc.name}: {name} is not a setting"


def test_env_example_names_only_real_settings():
    known = _settings_names() | {"PROMETHEUS_MULTIPROC_DIR"}
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (DEPLOYMENT / ".env.example").read_text(), re.M)
    assert len(names) > 20
    assert [name for name in names if name not in known] == []


def test_the_batch_benchmark_runs():
    result = subprocess.run(
        [sys.executable, str(DEPLOYMENT / "bench" / "batch_bench.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--lines" in result.stdout
