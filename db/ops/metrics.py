"""Prometheus exposition per process kind: each process exports its own metrics only.

Three kinds of process export metrics: the `web` tier (gunicorn, `/metrics`), a `worker`
group (Dramatiq, its own port) and the `scheduler` (its own port). They share modules
(the API imports the actors to send messages, the scheduler imports them to send ticks),
so every metric object exists in every process; in Prometheus' multiprocess mode an
unlabelled one even writes a 0 to the group's directory. What a process exports is
therefore decided here, by kind (`FAMILIES`), not by what happens to be imported:
`KindCollector` filters the multiprocess files (web, worker) or the process's own
registry (scheduler) down to the kind's families, and adds

- `process_*` for the whole process group (a gunicorn master and its workers, a
  Dramatiq parent, its workers and forks), summed: one scrape target is one group;
- `ledgerq_build_info{version,revision,python,component}` = 1.

`check_access` is the optional protection of every exposition endpoint: a bearer token
(`LEDGERQ_METRICS_TOKEN`) and/or an allowlist of client networks (`LEDGERQ_METRICS_ALLOW`).

A new metric must be added to `FAMILIES` (tests/db/ops/test_metrics.py fails otherwise).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import platform
import resource
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from db.core.config import Settings

WEB, WORKER, SCHEDULER = "web", "worker", "scheduler"
KINDS = (WEB, WORKER, SCHEDULER)

# Family names as prometheus_client reports them (a counter's without `_total`).
_ENQUEUE = "ledgerq_enqueue_failures"
FAMILIES: dict[str, frozenset[str]] = {
    WEB: frozenset({"ledgerq_http_requests", "ledgerq_http_request_seconds", _ENQUEUE}),
    WORKER: frozenset(
        {
            "ledgerq_transactions_applied",
            "ledgerq_posting_guesses",
            "ledgerq_transactions_dead_lettered",
            "ledgerq_transaction_apply_seconds",
            "ledgerq_sweeper_reenqueued",
            "ledgerq_scheduled_released",
            "ledgerq_schedule_runs_created",
            "ledgerq_batch_lines_applied",
            "ledgerq_batch_chunk_seconds",
            "ledgerq_batches_resent",
            "ledgerq_webhook_deliveries",
            "ledgerq_webhook_attempt_seconds",
            "ledgerq_webhook_oldest_undelivered_seconds",
            "ledgerq_webhook_circuits",
            "ledgerq_webhook_circuits_opened",
            "ledgerq_events_pruned",
            "ledgerq_holds_expired",
            _ENQUEUE,
        }
    ),
    SCHEDULER: frozenset(
        {
            "ledgerq_scheduler_leader",
            "ledgerq_queue_depth",
            "ledgerq_queue_in_flight",
            "ledgerq_queue_delayed",
            "ledgerq_queue_dead_letters",
            "ledgerq_pending_transactions",
            "ledgerq_oldest_pending_age_seconds",
            "ledgerq_scheduler_lag_seconds",
            "ledgerq_batches_in_progress",
            "ledgerq_batch_oldest_idle_seconds",
            "ledgerq_backlog_refreshed_timestamp_seconds",
            _ENQUEUE,
        }
    ),
}
# Families owned by a library: Dramatiq's Prometheus middleware in worker processes.
PREFIXES: dict[str, tuple[str, ...]] = {WEB: (), WORKER: ("dramatiq_",), SCHEDULER: ()}


def owns(kind: str, family: str) -> bool:
    return family in FAMILIES[kind] or family.startswith(PREFIXES[kind])


@lru_cache(maxsize=1)
def _version() -> str:
    try:
        return metadata.version("ledgerq")
    except metadata.PackageNotFoundError:  # running from a checkout without install
        return "0+unknown"


class KindCollector:
    """Everything one process kind exports (see the module docstring)."""

    def __init__(self, kind: str, settings: Settings) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown process kind {kind!r}")
        self.kind = kind
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        yield from self._own_families()
        yield self._build_info()
        yield from self._process_group()

    def _own_families(self) -> Iterable[Metric]:
        from prometheus_client import REGISTRY
        from prometheus_client.multiprocess import MultiProcessCollector

        directory = self.settings.prometheus_multiproc_dir
        source = MultiProcessCollector(None, path=directory).collect() if directory else REGISTRY.collect()
        return (family for family in source if owns(self.kind, family.name))

    def _build_info(self) -> Metric:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "ledgerq_build_info",
            "The running build: 1, labelled with its version",
            labels=["version", "revision", "python", "component"],
        )
        family.add_metric([_version(), self.settings.build_revision, platform.python_version(), self.kind], 1)
        return family

    def _process_group(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        root_pid = self.settings.metrics_group_pid or os.getpid()
        try:
            root = psutil.Process(root_pid)
            members = [root, *root.children(recursive=True)]
            start_time = root.create_time()
        except psutil.Error:
            return
        cpu = rss = vms = fds = 0.0
        counted = 0
        for proc in members:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    memory = proc.memory_info()
                    open_fds = proc.num_fds()
            except psutil.Error:  # exited while we looked: it is no longer in the group
                continue
            cpu += times.user + times.system
            rss += memory.rss
            vms += memory.vms
            fds += open_fds
            counted += 1
        what = "summed over the process group"
        yield CounterMetricFamily("process_cpu_seconds", f"User and system CPU time, {what}", value=cpu)
        yield GaugeMetricFamily("process_resident_memory_bytes", f"Resident memory, {what}", value=rss)
        yield GaugeMetricFamily("process_virtual_memory_bytes", f"Virtual memory, {what}", value=vms)
        yield GaugeMetricFamily("process_open_fds", f"Open file descriptors, {what}", value=fds)
        yield GaugeMetricFamily(
            "process_max_fds",
            "Open file descriptor limit",
            value=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )
        yield GaugeMetricFamily(
            "process_start_time_seconds", "Start of the group's root process (Unix time)", value=start_time
        )
        yield GaugeMetricFamily("ledgerq_processes", "Live processes in this group", value=counted)


def exposition(kind: str, settings: Settings) -> tuple[bytes, str]:
    """The Prometheus text of this process kind and its content type."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        disable_created_metrics,
        generate_latest,
    )

    # A single-process registry (the scheduler) would add a `<counter>_created` series
    # per counter, the odd `ledgerq_schedule_runs_created_created`; nothing uses them.
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KindCollector(kind, settings))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def check_access(settings: Settings, authorization: str | None, peer: str | None) -> int | None:
    """None when the scrape may proceed, else the HTTP status to answer (401 or 403).

    With `LEDGERQ_METRICS_ALLOW` set, the direct peer's address must be in one of its
    networks; with `LEDGERQ_METRICS_TOKEN` set, `Authorization: Bearer <token>` must
    match. Both unset: open (the development default; see deployment/README.md)."""
    networks = settings.metrics_allow_networks
    if networks:
        try:
            address = ipaddress.ip_address((peer or "").split("%", 1)[0])
        except ValueError:
            return 403
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not any(address in network for network in networks):
            return 403
    token = settings.metrics_token
    if token:
        scheme, _, supplied = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.strip().encode(), token.encode()):
            return 401
    return None


def serve_forever(kind: str, settings: Settings, host: str, port: int) -> None:
    """A minimal threaded HTTP server answering GET /metrics for `kind` (worker groups
    and the scheduler; the web tier answers on its own port through Flask)."""
    make_server(kind, settings, host, port).serve_forever()


def make_server(kind: str, settings: Settings, host: str, port: int):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self._answer(404, b"not found\n", "text/plain")
                return
            denied = check_access(settings, self.headers.get("Authorization"), self.client_address[0])
            if denied:
                self._answer(denied, b"metrics: access denied\n", "text/plain")
                return
            body, content_type = exposition(kind, settings)
            self._answer(200, body, content_type)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - scrapes are not logged
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
