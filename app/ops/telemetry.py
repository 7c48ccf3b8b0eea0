"""Prometheus metrics of one app (GET /metrics), created with the app, not at import time.

Under `serve --workers N`, prometheus-client's multiprocess mode is on (PROMETHEUS_MULTIPROC_DIR,
set by `serve`): each worker writes its values to files there, and a scrape of any worker sums
them all. Label values come from short fixed sets only (never ids, emails or client-chosen
operation names), so the number of series stays bounded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
ERROR_CODES = frozenset(
    {
        "BAD_USER_INPUT",
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "CONFLICT",
        "QUERY_TOO_COMPLEX",
        "RATE_LIMITED",
        "SERVICE_UNAVAILABLE",
        "INTERNAL_SERVER_ERROR",
    }
)
OPERATION_TYPES = frozenset({"query", "mutation", "subscription"})
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "WS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def outcome_label(code: str | None) -> str:
    """'ok', or the error's contract code; anything else is 'OTHER'."""
    if code is None:
        return "ok"
    return code if code in ERROR_CODES else "OTHER"


# WebSocket close codes the server sends, or the protocol defines (1000-1015): a client picks
# the code it closes with, so any other would add a series per value ("other" instead).
CLOSE_CODES = frozenset(range(1000, 1016)) | {4400, 4401, 4403, 4406, 4408, 4409, 4413, 4429, 4500}


def status_label(method: str, status: int) -> str:
    """The status label: HTTP statuses as they are (the server picks them), a WebSocket's
    close code when it is one of CLOSE_CODES, else 'other'."""
    if method == "WS" and status not in CLOSE_CODES and not 100 <= status < 600:
        return "other"
    return str(status)


def operation_type_label(kind: str | None) -> str:
    return kind if kind in OPERATION_TYPES else "unknown"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Telemetry:
    def __init__(self, *, sqlite: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        r = self.registry
        self.operations = Counter(
            "syncstatus_graphql_operations",
            "GraphQL operations by type and outcome (ok or the error code).",
            ["operation_type", "outcome"],
            registry=r,
        )
        self.operation_seconds = Histogram(
            "syncstatus_graphql_operation_duration_seconds",
            "Time to execute a GraphQL operation (subscriptions: until subscribed).",
            ["operation_type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.subscriptions = Gauge(
            "syncstatus_subscriptions",
            "Open subscriptions, by kind (users or metrics).",
            ["kind"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.websockets = Gauge(
            "syncstatus_websocket_connections",
            "Open WebSocket connections.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.events_published = Counter(
            "syncstatus_events_published", "Events published to the broker.", registry=r
        )
        self.publish_failures = Counter(
            "syncstatus_events_publish_failures",
            "Events that could not be published (broker unreachable).",
            registry=r,
        )
        self.webhook_attempts = Counter(
            "syncstatus_webhook_attempts",
            "Webhook delivery attempts by outcome: delivered, retrying (failed, tried again "
            "later) or given_up (failed past SYNCSTATUS_WEBHOOK_GIVE_UP_SECONDS).",
            ["outcome"],
            registry=r,
        )
        self.publish_retries = Counter(
            "syncstatus_events_publish_retries",
            "Publishes tried again after timing out while the broker was up (a busy process).",
            registry=r,
        )
        self.events_delivered = Counter(
            "syncstatus_events_delivered",
            "Subscription results sent to WebSocket clients.",
            registry=r,
        )
        self.events_coalesced = Counter(
            "syncstatus_events_coalesced",
            "Events superseded by a newer state of the same user before they were sent.",
            registry=r,
        )
        self.events_dropped = Counter(
            "syncstatus_events_dropped",
            "Events lost: a full broker queue (broker_queue), or a subscriber cut off for "
            "falling behind (subscriber_overflow), or for its connection's byte budget "
            "(slow_reader); both counted per subscriber.",
            ["reason"],
            registry=r,
        )
        self.slow_reader_closes = Counter(
            "syncstatus_websocket_slow_reader_closes",
            "WebSockets closed (4413) because their send made no progress for "
            "SYNCSTATUS_WS_SEND_TIMEOUT seconds: a client that stopped reading.",
            registry=r,
        )
        self.broker_reconnects = Counter(
            "syncstatus_broker_reconnects",
            "Reconnections of the broker's subscribe connection after it was lost.",
            registry=r,
        )
        # Only on SQLite: on PostgreSQL there is no writer thread, and a metric that never
        # moves reads as "no write ever waits".
        self.sqlite_writer_wait = (
            Histogram(
                "syncstatus_sqlite_writer_queue_wait_seconds",
                "Time a write transaction waited for SQLite's writer thread.",
                buckets=WAIT_BUCKETS,
                registry=r,
            )
            if sqlite
            else None
        )
        self.http_requests = Counter(
            "syncstatus_http_requests",
            "HTTP requests by route template, method and status (WebSockets: method WS and "
            "the close code).",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "syncstatus_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pruned_runs = Counter(
            "syncstatus_pruned_runs", "Finished runs deleted by the retention pruner.", registry=r
        )
        self.runs_timed_out = Counter(
            "syncstatus_runs_timed_out",
            "Runs ended as FAILED (WORKER_LOST) by the reaper: no report from their worker for "
            "SYNCSTATUS_RUN_TIMEOUT_SECONDS.",
            registry=r,
        )
        if not self.multiprocess:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    def operation(self, operation_type: str | None, code: str | None, seconds: float) -> None:
        kind = operation_type_label(operation_type)
        self.operations.labels(kind, outcome_label(code)).inc()
        self.operation_seconds.labels(kind).observe(seconds)

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        self.http_requests.labels(route, method, status_label(method, status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        mark_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        # Process figures are per process: those of the worker that answers.
        ProcessCollector(registry=registry)
        return generate_latest(registry)

    def worker_exits(self) -> None:
        directory = multiprocess_dir()
        if directory is not None:
            multiprocess.mark_process_dead(os.getpid(), directory)


def mark_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that died without saying so (SIGKILL): a restarted
    worker is a new pid, and the dead one's open subscriptions must not count forever."""
    pids = set()
    for path in Path(directory).glob("gauge_live*.db"):
        match = _GAUGE_FILE.match(path.name)
        if match:
            pids.add(int(match.group(1)))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
