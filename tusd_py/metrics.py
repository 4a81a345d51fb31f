"""Prometheus metrics under tusd's names, via prometheus-client.

tusd's Go counters are named without `_total` (`tusd_bytes_received`,
`tusd_uploads_created`, ...); prometheus-client would add the suffix to a
Counter, so those are exported as monotonic gauges to keep the exact names
dashboards query. `tusd_requests_total`, `tusd_errors_total` and the hook
counters keep their `_total` names.

With several workers, PROMETHEUS_MULTIPROC_DIR (set by the CLI before the
workers start) makes every process write its values to shared files, and
/metrics sums them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response

from .hooks import TUSD_HOOK_TYPES

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
# tusd exposes no `*_created` series.
disable_created_metrics()
METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def forget_process(pid: int) -> None:
    """A dead worker's live gauges (its open requests) stop counting; called by the supervisor."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        mark_process_dead(pid)


class Metrics:
    def __init__(self) -> None:
        # Multiprocess values live in shared files, so no registry there.
        self.registry = None if MULTIPROCESS else CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "tusd_requests", "Total number of requests served by tusd per method.", ["method"], registry=registry
        )
        self.errors = Counter(
            "tusd_errors", "Total number of errors per status.", ["status", "code"], registry=registry
        )
        self.bytes_received = Gauge(
            "tusd_bytes_received", "Number of bytes received for uploads.", registry=registry, multiprocess_mode="sum"
        )
        self.uploads_created = Gauge(
            "tusd_uploads_created", "Number of created uploads.", registry=registry, multiprocess_mode="sum"
        )
        self.uploads_finished = Gauge(
            "tusd_uploads_finished", "Number of finished uploads.", registry=registry, multiprocess_mode="sum"
        )
        self.uploads_terminated = Gauge(
            "tusd_uploads_terminated", "Number of terminated uploads.", registry=registry, multiprocess_mode="sum"
        )
        self.connections_open = Gauge(
            "tusd_connections_open", "Current number of open requests.", registry=registry, multiprocess_mode="livesum"
        )
        self.hook_invocations = Counter(
            "tusd_hook_invocations", "Total number of invocations per hook type.", ["hooktype"], registry=registry
        )
        self.hook_errors = Counter("tusd_hook_errors", "Total number of execution errors per hook type.",
                                   ["hooktype"], registry=registry)  # fmt: skip

        # tusd shows these series at zero from the start.
        for method in METHODS:
            self.requests.labels(method)
        for hook_type in TUSD_HOOK_TYPES:  # our pre-access gets its series when first used
            self.hook_invocations.labels(hook_type)
            self.hook_errors.labels(hook_type)

    def hook_called(self, hook_type: str, failed: bool) -> None:
        self.hook_invocations.labels(hook_type).inc()
        if failed:
            self.hook_errors.labels(hook_type).inc()

    def exposition(self) -> bytes:
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    async def endpoint(self, request: Request) -> Response:
        return Response(self.exposition(), media_type=CONTENT_TYPE)
