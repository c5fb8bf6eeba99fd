"""deployment/systemd/: the units pass `systemd-analyze verify` (in a scratch root with
stand-ins for the installed commands) and keep the promises of deployment/README.md:
production mode, network-online wanted, migrations once, before everything, locked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deployment.tools import DEPLOYMENT, require, run

SYSTEMD = DEPLOYMENT / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))


def _parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A scratch root: the system's own units (targets) plus ours, and executable
    stand-ins where our units expect the installed virtualenv."""
    root = tmp_path_factory.mktemp("systemd-root")
    system_units = Path("/usr/lib/systemd/system")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    bin_dir = root / "opt/ledgerq/.venv/bin"
    bin_dir.mkdir(parents=True)
    for name in ("ledgerq", "gunicorn"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, target / unit.name)
    shutil.copy(SYSTEMD / "ledgerq-worker@.service", target / "ledgerq-worker@9191.service")
    return root


@pytest.mark.parametrize(
    "unit",
    [
        "ledgerq-migrate.service",
        "ledgerq-web.service",
        "ledgerq-scheduler.service",
        "ledgerq-worker@9191.service",
    ],
)
def test_unit_passes_systemd_analyze_verify(root, unit):
    analyze = require("systemd-analyze", "systemd")
    result = run([analyze, "verify", "--man=no", f"--root={root}", f"/etc/systemd/system/{unit}"])
    # Unknown keys are only warnings (exit 0): any output at all is a finding.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_every_unit_runs_in_production_after_the_network_is_up():
    assert {unit.name for unit in UNITS} == {
        "ledgerq-migrate.service",
        "ledgerq-web.service",
        "ledgerq-scheduler.service",
        "ledgerq-worker@.service",
    }
    for unit in UNITS:
        sections = _parse(unit)
        assert "network-online.target" in sections["Unit"]["Wants"], unit.name
        assert "network-online.target" in " ".join(sections["Unit"]["After"]).split(), unit.name
        assert "LEDGERQ_ENV=production" in sections["Service"]["Environment"], unit.name
        assert sections["Service"]["User"] == ["ledgerq"]


def test_migrations_run_once_before_every_process():
    migrate = _parse(SYSTEMD / "ledgerq-migrate.service")["Service"]
    assert migrate["Type"] == ["oneshot"] and migrate["RemainAfterExit"] == ["yes"]
    assert migrate["ExecStart"] == ["/opt/ledgerq/.venv/bin/ledgerq migrate"]  # takes the advisory lock
    for name in ("ledgerq-web.service", "ledgerq-scheduler.service", "ledgerq-worker@.service"):
        sections = _parse(SYSTEMD / name)
        assert "ledgerq-migrate.service" in sections["Unit"]["Requires"], name
        assert "ledgerq-migrate.service" in " ".join(sections["Unit"]["After"]).split(), name
        assert not any("migrate" in line for line in sections["Service"].get("ExecStartPre", [])), name


def test_each_worker_instance_has_its_own_metrics_port():
    service = _parse(SYSTEMD / "ledgerq-worker@.service")["Service"]
    assert service["ExecStart"] == ["/opt/ledgerq/.venv/bin/ledgerq worker --metrics-port %i"]
