"""Prometheus metrics of the sidecar, on a registry of its own.

Per route and backend: a request counter labelled with the outcome code (``ok`` or an
error code of the protocol) and a latency histogram. Label children are bound once per
route, so recording a request costs no label lookup.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

disable_created_metrics()  # type: ignore[no-untyped-call]

_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "agentpersistence_requests",
            "Requests served, by route, backend and outcome code.",
            ["route", "backend", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "agentpersistence_request_duration_seconds",
            "Time from a request's arrival to its answer, by route and backend.",
            ["route", "backend"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def recorder(self, route: str, backend: str) -> RouteRecorder:
        return RouteRecorder(self, route, backend)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RouteRecorder:
    """Pre-bound metric children of one route."""

    def __init__(self, metrics: Metrics, route: str, backend: str) -> None:
        self._metrics = metrics
        self._route = route
        self._backend = backend
        self._ok = metrics.requests.labels(route, backend, "ok")
        self._latency = metrics.latency.labels(route, backend)

    def observe(self, seconds: float, code: str) -> None:
        self._latency.observe(seconds)
        if code == "ok":
            self._ok.inc()
        else:
            self._metrics.requests.labels(self._route, self._backend, code).inc()
