"""The README's generated-client walk-through, as a newcomer runs it: a real web tier
(gunicorn) and worker against this run's PostgreSQL and Redis, `ledgerq users create`
for the finance user, `openapi-python-client generate --url` against the live document,
then the README's Python block, executed unchanged but for the server's address."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from db.ops.embedded import free_port
from tests.fixtures.ledger import ledger_problems
from tests.fixtures.processes import LEDGERQ, Http, Processes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(LEDGERQ).parent
README_DEFAULT_URL = "http://127.0.0.1:8000"


def _readme_blocks() -> tuple[str, str]:
    """The generator command and the Python block of the generated-client walk-through."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Walk-through (a generated Python client)", 1)[1].split("\n## ", 1)[0]
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return bash, python


@pytest.fixture
def server(tmp_path):
    processes = Processes(tmp_path)
    port = free_port()
    web = processes.start(
        "web",
        [str(BIN / "gunicorn"), "--config", "python:api.gunicorn_conf", "api:create_app()"],
        env={"WEB_HOST": "127.0.0.1", "PORT": str(port), "WEB_WORKERS": "1", "WEB_THREADS": "4"},
    )
    processes.start(
        "worker", [LEDGERQ, "worker", "--processes", "1", "--threads", "2", "--metrics-port", "0"]
    )
    http = Http(f"http://127.0.0.1:{port}")
    try:
        http.wait_ready(90, web)
        yield http.base_url, processes
    except BaseException:
        print(processes.logs())
        raise
    finally:
        processes.kill_all()


def test_readme_walk_through_through_a_generated_client(server, tmp_path):
    base_url, processes = server
    bash, python = _readme_blocks()
    assert README_DEFAULT_URL in bash and f'BASE_URL = "{README_DEFAULT_URL}"' in python

    created = subprocess.run(
        [
            LEDGERQ,
            "users",
            "create",
            "--username",
            "fin",
            "--email",
            "fin@example.com",
            "--role",
            "finance",
            "--password-stdin",
        ],
        input="ledger ink on paper\n",
        capture_output=True,
        text=True,
        env=processes.env(),
        timeout=60,
    )
    assert created.returncode == 0, created.stderr

    command = bash.replace("\\\n", " ").replace(README_DEFAULT_URL, base_url).split()
    assert command[0] == "openapi-python-client"
    generated = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=processes.env({"PATH": f"{BIN}:/usr/bin:/bin"}),
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
    assert (tmp_path / "ledgerq_client" / "api" / "transactions" / "create_transfer.py").is_file()

    sys.path.insert(0, str(tmp_path))
    try:
        importlib.invalidate_caches()
        exec(compile(python.replace(README_DEFAULT_URL, base_url), "README.md", "exec"), {})  # noqa: S102
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "ledgerq_client" or m.startswith("ledgerq_client.")]:
            del sys.modules[name]
    assert ledger_problems() == []
