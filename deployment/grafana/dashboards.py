"""The Grafana dashboards, as code: `python deployment/grafana/dashboards.py` writes
deployment/grafana/dashboards/*.json (what Grafana provisions). Edit this file, not the
JSON; tests/deployment/test_grafana.py fails when the two differ, and checks every
metric the panels query against what the processes really export.

Every query names its Prometheus job (`ledgerq-web`, `ledgerq-worker`,
`ledgerq-scheduler`, as in deployment/prometheus/prometheus.yml), so a panel can never
sum a worker-only series over the web tier. Gauges the scheduler leader measures are
read with `max()`: a standby exports none of them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
WEB, WORKER, SCHEDULER = '{job="ledgerq-web"}', '{job="ledgerq-worker"}', '{job="ledgerq-scheduler"}'


def _sel(job: str, extra: str = "") -> str:
    return job if not extra else job[:-1] + "," + extra + "}"


WEB_STATUS_5 = _sel(WEB, 'status=~"5.."')
WEB_STATUS_4 = _sel(WEB, 'status=~"4.."')
WORKER_STATUS_COMPLETED = _sel(WORKER, 'status="completed"')
WORKER_STATUS_FAILED = _sel(WORKER, 'status="failed"')
SCHEDULER_KIND_SCHEDULED_TRANSFER = _sel(SCHEDULER, 'kind="scheduled_transfer"')
SCHEDULER_KIND_STANDING_ORDER = _sel(SCHEDULER, 'kind="standing_order"')
WORKER_OUTCOME_DELIVERED = _sel(WORKER, 'outcome="delivered"')
WORKER_OUTCOME_FAILED = _sel(WORKER, 'outcome="failed"')
WORKER_CIRCUIT_OPEN = _sel(WORKER, 'state="open"')


class Board:
    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[dict] = []
        self.y = 0
        self.x = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.x, self.y = 0, self.y + 8

    def _place(self, width: int, height: int) -> dict:
        if self.x + width > 24:
            self._newline()
        pos = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.x += width
        return pos

    def graph(
        self, title: str, targets: list[tuple[str, str]], unit: str = "short", width: int = 12, **extra
    ):
        self._panel("timeseries", title, targets, unit, width, 8, extra)

    def stat(self, title: str, expr: str, unit: str = "short", width: int = 6, **extra):
        self._panel("stat", title, [(expr, "")], unit, width, 4, extra)

    def _panel(self, kind, title, targets, unit, width, height, extra) -> None:
        panel = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "datasource": DATASOURCE,
            "gridPos": self._place(width, height),
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [
                {"datasource": DATASOURCE, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if "description" in extra:
            panel["description"] = extra.pop("description")
        panel.update(extra)
        self.panels.append(panel)

    def document(self) -> dict:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["ledgerq"],
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "editable": True,
            "refresh": "30s",
            "time": {"from": "now-3h", "to": "now"},
            "templating": {"list": []},
            "annotations": {"list": []},
            "links": [{"title": "ledgerq", "type": "dashboards", "tags": ["ledgerq"], "asDropdown": True}],
            "panels": self.panels,
        }


def quantiles(metric: str, job: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{job}[{RATE}])))",
            f"p{int(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def process_rows(board: Board, job: str, what: str) -> None:
    board.row(f"{what} processes")
    board.graph("CPU (cores)", [(f"rate(process_cpu_seconds_total{job}[{RATE}])", "{{instance}}")], width=8)
    board.graph(
        "Resident memory", [(f"process_resident_memory_bytes{job}", "{{instance}}")], "bytes", width=8
    )
    board.graph("Processes per group", [(f"ledgerq_processes{job}", "{{instance}}")], width=8)


def api() -> Board:
    board = Board("ledgerq-api", "ledgerq / API", "HTTP traffic, errors and latency by route (the web tier).")
    board.row("Overview")
    total = f"sum(rate(ledgerq_http_requests_total{WEB}[{RATE}]))"
    errors = f"sum(rate(ledgerq_http_requests_total{WEB_STATUS_5}[{RATE}]))"
    board.stat("Requests / s", total, "reqps")
    board.stat("5xx ratio", f"{errors} / {total}", "percentunit")
    board.stat(
        "p95 latency",
        f"histogram_quantile(0.95, sum by (le) (rate(ledgerq_http_request_seconds_bucket{WEB}[{RATE}])))",
        "s",
    )
    board.stat(
        "Accepted while Redis was down",
        f"sum(increase(ledgerq_enqueue_failures_total{WEB}[1h]))",
        description="202s whose message could not be sent; the sweeper sends them later.",
    )
    board.row("By route")
    board.graph(
        "Requests / s by route",
        [(f"sum by (endpoint) (rate(ledgerq_http_requests_total{WEB}[{RATE}]))", "{{endpoint}}")],
        "reqps",
    )
    board.graph(
        "Responses / s by status",
        [(f"sum by (status) (rate(ledgerq_http_requests_total{WEB}[{RATE}]))", "{{status}}")],
        "reqps",
    )
    board.graph(
        "5xx / s by route",
        [
            (
                f"sum by (endpoint, status) (rate(ledgerq_http_requests_total{WEB_STATUS_5}[{RATE}]))",
                "{{endpoint}} {{status}}",
            )
        ],
        "reqps",
    )
    board.graph(
        "4xx / s by route",
        [
            (
                f"sum by (endpoint, status) (rate(ledgerq_http_requests_total{WEB_STATUS_4}[{RATE}]))",
                "{{endpoint}} {{status}}",
            )
        ],
        "reqps",
    )
    board.graph(
        "p95 latency by route",
        [
            (
                f"histogram_quantile(0.95, sum by (le, endpoint) (rate(ledgerq_http_request_seconds_bucket{WEB}[{RATE}])))",
                "{{endpoint}}",
            )
        ],
        "s",
        width=24,
    )
    board.graph("Latency (all routes)", quantiles("ledgerq_http_request_seconds", WEB), "s", width=24)
    process_rows(board, WEB, "Web")
    return board


def workers() -> Board:
    board = Board(
        "ledgerq-workers",
        "ledgerq / Workers & queues",
        "Throughput, retries, dead letters, queue depth, pending age and apply latency.",
    )
    board.row("Backlog")
    board.stat("Pending transactions", f"max(ledgerq_pending_transactions{SCHEDULER})")
    board.stat("Oldest pending", f"max(ledgerq_oldest_pending_age_seconds{SCHEDULER})", "s")
    board.stat("Dead letters (all queues)", f"sum(max by (queue) (ledgerq_queue_dead_letters{SCHEDULER}))")
    board.stat(
        "Dead-lettered transactions (24 h)",
        f"sum(increase(ledgerq_transactions_dead_lettered_total{WORKER}[24h]))",
    )
    board.graph(
        "Queue depth",
        [
            (f"max by (queue) (ledgerq_queue_depth{SCHEDULER})", "{{queue}} waiting"),
            (f"max by (queue) (ledgerq_queue_in_flight{SCHEDULER})", "{{queue}} in flight"),
            (f"max by (queue) (ledgerq_queue_delayed{SCHEDULER})", "{{queue}} delayed"),
        ],
    )
    board.graph(
        "Pending transactions and the oldest one's age",
        [
            (f"max(ledgerq_pending_transactions{SCHEDULER})", "pending"),
            (f"max(ledgerq_oldest_pending_age_seconds{SCHEDULER})", "oldest age (s)"),
        ],
    )
    board.row("Throughput")
    board.graph(
        "Messages / s by actor",
        [(f"sum by (actor_name) (rate(dramatiq_messages_total{WORKER}[{RATE}]))", "{{actor_name}}")],
    )
    board.graph(
        "In progress by actor",
        [(f"sum by (actor_name) (dramatiq_messages_inprogress{WORKER})", "{{actor_name}}")],
    )
    board.graph(
        "Retries and errors / s",
        [
            (
                f"sum by (actor_name) (rate(dramatiq_message_retries_total{WORKER}[{RATE}]))",
                "retry {{actor_name}}",
            ),
            (
                f"sum by (actor_name) (rate(dramatiq_message_errors_total{WORKER}[{RATE}]))",
                "error {{actor_name}}",
            ),
        ],
    )
    board.graph(
        "Dead letters by queue",
        [(f"max by (queue) (ledgerq_queue_dead_letters{SCHEDULER})", "{{queue}}")],
    )
    board.graph(
        "Recovered by the sweeper / s",
        [(f"sum(rate(ledgerq_sweeper_reenqueued_total{WORKER}[{RATE}]))", "re-enqueued")],
        description="Pending rows whose message Redis lost; steady growth means Redis is losing messages.",
    )
    board.graph(
        "Transactions decided / s",
        [(f"sum by (status) (rate(ledgerq_transactions_applied_total{WORKER}[{RATE}]))", "{{status}}")],
    )
    board.row("Latency")
    board.graph("Apply latency (one transfer)", quantiles("ledgerq_transaction_apply_seconds", WORKER), "s")
    board.graph(
        "Message duration p95 by actor",
        [
            (
                "histogram_quantile(0.95, sum by (le, actor_name) "
                f"(rate(dramatiq_message_duration_milliseconds_bucket{WORKER}[{RATE}])))",
                "{{actor_name}}",
            )
        ],
        "ms",
    )
    process_rows(board, WORKER, "Worker")
    return board


def business() -> Board:
    board = Board(
        "ledgerq-business",
        "ledgerq / Ledger & business",
        "Completed and failed transactions, batches, the scheduler's leader and lag.",
    )
    applied = "ledgerq_transactions_applied_total"
    board.row("Transactions")
    board.graph(
        "Completed / s by currency",
        [(f"sum by (currency) (rate({applied}{WORKER_STATUS_COMPLETED}[{RATE}]))", "{{currency}}")],
        description="A count of transactions; amounts are exact only in the ledger (never exported as floats).",
    )
    board.graph(
        "Failed / s by code",
        [(f"sum by (failure_code) (rate({applied}{WORKER_STATUS_FAILED}[{RATE}]))", "{{failure_code}}")],
    )
    board.graph(
        "Completed / s by type",
        [(f"sum by (type) (rate({applied}{WORKER_STATUS_COMPLETED}[{RATE}]))", "{{type}}")],
    )
    board.graph(
        "Failure ratio",
        [
            (
                f"sum(rate({applied}{WORKER_STATUS_FAILED}[{RATE}])) / sum(rate({applied}{WORKER}[{RATE}]))",
                "failed / decided",
            )
        ],
        "percentunit",
    )
    board.row("Batches")
    board.graph(
        "Unfinished batches by status",
        [(f"max by (status) (ledgerq_batches_in_progress{SCHEDULER})", "{{status}}")],
        width=8,
    )
    board.graph(
        "Batch lines decided / s",
        [(f"sum by (status) (rate(ledgerq_batch_lines_applied_total{WORKER}[{RATE}]))", "{{status}}")],
        width=8,
    )
    board.graph(
        "Least recently progressed batch idle for",
        [
            (f"max(ledgerq_batch_oldest_idle_seconds{SCHEDULER})", "idle (s)"),
            (f"sum(increase(ledgerq_batches_resent_total{WORKER}[{RATE}]))", "re-sent by the sweeper"),
        ],
        width=8,
    )
    board.graph("Chunk apply latency", quantiles("ledgerq_batch_chunk_seconds", WORKER), "s", width=24)
    board.row("Scheduler")
    board.stat("Leaders (should be 1)", f"sum(ledgerq_scheduler_leader{SCHEDULER})", width=8)
    board.stat(
        "Scheduled-transfer lag",
        f"max(ledgerq_scheduler_lag_seconds{SCHEDULER_KIND_SCHEDULED_TRANSFER})",
        "s",
        width=8,
    )
    board.stat(
        "Standing-order lag",
        f"max(ledgerq_scheduler_lag_seconds{SCHEDULER_KIND_STANDING_ORDER})",
        "s",
        width=8,
    )
    board.graph("Leader by instance", [(f"ledgerq_scheduler_leader{SCHEDULER}", "{{instance}}")], width=8)
    board.graph(
        "Lag", [(f"max by (kind) (ledgerq_scheduler_lag_seconds{SCHEDULER})", "{{kind}}")], "s", width=8
    )
    board.graph(
        "Released / created per second",
        [
            (f"sum(rate(ledgerq_scheduled_released_total{WORKER}[{RATE}]))", "scheduled transfers released"),
            (
                f"sum(rate(ledgerq_schedule_runs_created_total{WORKER}[{RATE}]))",
                "standing-order runs created",
            ),
        ],
        width=8,
    )
    process_rows(board, SCHEDULER, "Scheduler")
    board.row("Builds")
    board.graph(
        "Running builds",
        [
            (
                "count by (component, version, revision) (ledgerq_build_info)",
                "{{component}} {{version}} {{revision}}",
            )
        ],
        width=24,
    )
    return board


def webhooks() -> Board:
    # The gauges are set by whichever worker runs a `webhooks.dispatch` tick (the pool
    # consuming the `webhooks` queue); `max()` reads that one over every worker group.
    board = Board(
        "ledgerq-webhooks",
        "ledgerq / Webhooks",
        "Webhook delivery: attempts by outcome, attempt latency, the oldest undelivered event, circuits.",
    )
    deliveries = "ledgerq_webhook_deliveries_total"
    oldest = f"max(ledgerq_webhook_oldest_undelivered_seconds{WORKER})"
    board.row("Delivery")
    board.stat(
        "Oldest undelivered event",
        oldest,
        "s",
        description="Age of the oldest event with a delivery still pending or in flight (0: none).",
    )
    board.stat("Delivered / s", f"sum(rate({deliveries}{WORKER_OUTCOME_DELIVERED}[{RATE}]))", "reqps")
    board.stat(
        "Failed deliveries (24 h)",
        f"sum(increase({deliveries}{WORKER_OUTCOME_FAILED}[24h]))",
        description="Deliveries that used up their retry window; `ledgerq webhooks retry` sends them again.",
    )
    board.stat("Open circuits", f"max(ledgerq_webhook_circuits{WORKER_CIRCUIT_OPEN})")
    board.graph(
        "Attempts / s by outcome",
        [(f"sum by (outcome) (rate({deliveries}{WORKER}[{RATE}]))", "{{outcome}}")],
        "reqps",
        description="delivered: 2xx; retrying: failed, tried again with backoff; failed: retry window used up.",
    )
    board.graph("Oldest undelivered event's age", [(oldest, "oldest (s)")], "s")
    board.row("Endpoints")
    board.graph("Attempt latency", quantiles("ledgerq_webhook_attempt_seconds", WORKER), "s", width=8)
    board.graph(
        "Endpoints by circuit state",
        [(f"max by (state) (ledgerq_webhook_circuits{WORKER})", "{{state}}")],
        width=8,
        description="open: nothing is sent for a cooldown; half_open: one probe decides.",
    )
    board.graph(
        "Circuits opened and events pruned / h",
        [
            (f"sum(increase(ledgerq_webhook_circuits_opened_total{WORKER}[1h]))", "circuits opened"),
            (f"sum(increase(ledgerq_events_pruned_total{WORKER}[1h]))", "events pruned"),
        ],
        width=8,
    )
    return board


BOARDS = (api, workers, business, webhooks)


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{board.uid}.json": json.dumps(board.document(), indent=2, sort_keys=True) + "\n"
        for board in (make() for make in BOARDS)
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
