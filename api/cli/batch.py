"""`ledgerq batch ...`: submit finance batch files and follow them through the HTTP API.

The CLI is an API client (like any finance tool): it needs the API's URL and either an
access token or a finance user's credentials, from options or the environment:

    LEDGERQ_API_URL   (default http://127.0.0.1:8000)
    LEDGERQ_TOKEN     an access token, or
    LEDGERQ_USERNAME / LEDGERQ_PASSWORD   to log in (POST /auth/login) first

The file is streamed from disk (never read whole into memory).

Exit status: 0 completed (or accepted, with --no-wait), 2 completed with errors or a
dry run that found rejected lines, 1 failed, cancelled, or the request was refused.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import click

from api.cli import main

FINAL = ("completed", "completed_with_errors", "failed", "cancelled")


class ApiError(click.ClickException):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        details = f" {json.dumps(error['details'])}" if error.get("details") else ""
        super().__init__(f"HTTP {status} {error.get('code', '')}: {error.get('message', body)}{details}")
        self.status = status


class Client:
    def __init__(self, api_url: str, token: str) -> None:
        self.base = api_url.rstrip("/") + "/api/v1"
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        all_headers = (
            {"Authorization": f"Bearer {self.token}", **(headers or {})} if self.token else headers or {}
        )
        data = body
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=all_headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - operator-given URL
                payload = response.read()
                return payload if raw else json.loads(payload or b"null")
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = payload.decode(errors="replace")
            raise ApiError(error.code, parsed) from None
        except urllib.error.URLError as error:
            raise click.ClickException(f"cannot reach the API at {self.base}: {error.reason}") from None


class MultipartFile:
    """A multipart/form-data body read lazily: form fields, then the file from disk."""

    def __init__(self, fields: dict[str, str], path: Path) -> None:
        self.boundary = f"ledgerq-{uuid.uuid4().hex}"
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        safe_name = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        self._parts: list[bytes | BinaryIO] = [head, path.open("rb"), f"\r\n--{self.boundary}--\r\n".encode()]
        self.length = len(head) + path.stat().st_size + len(self._parts[2])  # type: ignore[arg-type]

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def read(self, size: int = -1) -> bytes:
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                chunk, rest = (part, b"") if size < 0 else (part[:size], part[size:])
                if rest:
                    self._parts[0] = rest
                else:
                    self._parts.pop(0)
            else:
                chunk = part.read(size)
                if not chunk or size < 0:
                    part.close()
                    self._parts.pop(0)
            if chunk:
                return chunk
        return b""


class Spinner:
    """A spinner on stderr while a step runs with nothing else to show (the server reading
    and validating a large upload). Only on a terminal: a log or a pipe gets one line."""

    FRAMES = "|/-\\"

    def __init__(self, label: str, interval: float = 0.1) -> None:
        self.label = label
        self.interval = interval
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def __enter__(self) -> Spinner:
        self.started = time.monotonic()
        if sys.stderr.isatty():
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        else:
            click.echo(f"{self.label}...", err=True)
        return self

    def _spin(self) -> None:
        frame = 0
        while not self._done.wait(self.interval):
            elapsed = time.monotonic() - self.started
            click.echo(f"\r{self.FRAMES[frame % 4]} {self.label} ({elapsed:.0f} s)", err=True, nl=False)
            frame += 1

    def __exit__(self, *_exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            click.echo("\r\033[K", err=True, nl=False)  # clear the spinner's line


def _client(api_url: str, token: str | None, username: str | None, password: str | None) -> Client:
    if token:
        return Client(api_url, token)
    if not (username and password):
        raise click.UsageError(
            "give --token (LEDGERQ_TOKEN) or --username/--password (LEDGERQ_USERNAME/_PASSWORD)"
        )
    anonymous = Client(api_url, "")
    tokens = anonymous.request("POST", "/auth/login", body={"username": username, "password": password})
    return Client(api_url, tokens["access_token"])


def api_options(command):
    for option in reversed(
        [
            click.option(
                "--api-url", envvar="LEDGERQ_API_URL", default="http://127.0.0.1:8000", show_default=True
            ),
            click.option("--token", envvar="LEDGERQ_TOKEN", help="access token (env LEDGERQ_TOKEN)"),
            click.option("--username", envvar="LEDGERQ_USERNAME", help="log in as (env LEDGERQ_USERNAME)"),
            click.option("--password", envvar="LEDGERQ_PASSWORD", help="(env LEDGERQ_PASSWORD)"),
        ]
    ):
        command = option(command)
    return command


@main.group()
def batch() -> None:
    """Finance batches: submit a CSV file, follow it, fetch its results."""


@batch.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--mode", type=click.Choice(["independent", "atomic"]), default="independent", show_default=True
)
@click.option("--scheduled-for", help="RFC 3339 time with offset, e.g. 2026-12-01T09:00:00+00:00")
@click.option("--reference", help="your reference for the whole batch")
@click.option("--dry-run", is_flag=True, help="validate every line and print the report; record nothing")
@click.option("--idempotency-key", help="retrying with the same key returns the same batch")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="follow the batch with a progress bar"
)
@click.option("--timeout", type=float, default=3600, show_default=True, help="seconds to wait for the end")
@api_options
def submit(file, mode, scheduled_for, reference, dry_run, idempotency_key, wait, timeout, **api) -> None:
    """Upload FILE (CSV) as a batch and, by default, wait for every line to be final."""
    client = _client(**api)
    fields = {"mode": mode}
    if scheduled_for:
        fields["scheduled_for"] = scheduled_for
    if reference:
        fields["reference"] = reference
    body = MultipartFile(fields, file)
    headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    click.echo(f"uploading {file} ({body.length} bytes)...", err=True)
    with Spinner("the server is reading and validating the file"):
        result = client.request(
            "POST", "/batches" + ("?dry_run=true" if dry_run else ""), body=body, headers=headers
        )
    if dry_run:
        _print_report(result)
        sys.exit(2 if result["rejected"] else 0)
    click.echo(f"batch {result['id']} {result['status']}", err=True)
    if wait and result["status"] not in FINAL and result["status"] != "scheduled":
        result = _follow(client, result, timeout)
    _print_batch(result)
    _print_first_problems(client, result)
    sys.exit(_exit_code(result))


def _follow(client: Client, batch: dict, timeout: float) -> dict:
    """Poll the batch, with a progress bar once its lines are known."""
    deadline = time.monotonic() + timeout
    batch_id = batch["id"]
    with Spinner("validating"):
        while batch["status"] in ("received", "validating") and time.monotonic() < deadline:
            time.sleep(0.5)
            batch = client.request("GET", f"/batches/{batch_id}")
    if batch["status"] in FINAL or batch["status"] == "scheduled":
        return batch
    total = batch["total_items"]
    with click.progressbar(length=total, label="lines final", show_pos=True, show_percent=True) as bar:
        shown = 0
        while True:
            decided = total - batch["counts"]["pending"]
            bar.update(decided - shown)
            shown = decided
            if batch["status"] in FINAL or time.monotonic() > deadline:
                return batch
            time.sleep(0.5)
            batch = client.request("GET", f"/batches/{batch_id}")


def _print_report(report: dict) -> None:
    duplicate = f"; duplicate of live batch {report['duplicate_of']}" if report.get("duplicate_of") else ""
    click.echo(
        f"dry run: {report['total_items']} lines, {report['accepted']} accepted, "
        f"{report['rejected']} rejected{duplicate}"
    )
    for item in report["rejected_items"]:
        click.echo(f"  line {item['line']}: {item['code']}: {item['reason']}")
    if report.get("truncated"):
        click.echo("  ... (more rejected lines not listed)")


FIRST_PROBLEMS = 10


def _print_first_problems(client: Client, batch: dict) -> None:
    """The first rejected and failed lines with their reasons: what to fix first (all of
    them are in `ledgerq batch results`)."""
    for status in ("rejected", "failed"):
        count = batch["counts"].get(status, 0)
        if not count:
            continue
        page = client.request("GET", f"/batches/{batch['id']}/items?status={status}&limit={FIRST_PROBLEMS}")
        click.echo(f"  {status} lines (first {min(count, FIRST_PROBLEMS)} of {count}):")
        for item in page["items"]:
            click.echo(f"    line {item['line']}: {item['failure_code']}: {item['failure_message']}")
    if batch["counts"].get("rejected") or batch["counts"].get("failed"):
        click.echo(f"  every line with its outcome: ledgerq batch results {batch['id']}")


def _print_batch(batch: dict) -> None:
    counts = ", ".join(f"{name} {count}" for name, count in batch["counts"].items() if count)
    click.echo(f"batch {batch['id']}: {batch['status']} ({batch['total_items']} lines: {counts or 'none'})")
    if batch.get("failure_message"):
        click.echo(f"  {batch.get('failure_code')}: {batch['failure_message']}")


def _exit_code(batch: dict) -> int:
    if batch["status"] in ("failed", "cancelled"):
        return 1
    if batch["status"] == "completed_with_errors":
        return 2
    return 0


@batch.command("status")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="print the batch as JSON")
@api_options
def status(batch_id: str, as_json: bool, **api) -> None:
    """Show a batch's status and counters."""
    batch_json = _client(**api).request("GET", f"/batches/{batch_id}")
    if as_json:
        click.echo(json.dumps(batch_json, indent=2))
    else:
        _print_batch(batch_json)


@batch.command("results")
@click.argument("batch_id")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="file (default stdout)")
@api_options
def results(batch_id: str, output: Path | None, **api) -> None:
    """Download results.csv: every input line with its outcome, in input order."""
    data = _client(**api).request("GET", f"/batches/{batch_id}/results.csv", raw=True)
    if output:
        output.write_bytes(data)
    else:
        click.echo(data.decode(), nl=False)
