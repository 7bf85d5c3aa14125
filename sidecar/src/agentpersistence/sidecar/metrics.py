"""Prometheus metrics of the sidecar, on a registry of its own.

Per route and backend: a request counter labelled with the outcome code (``ok`` or an
error code of the protocol) and a latency histogram. Requests are recorded into plain
per-route counters (no lock, no label lookup on the hot path) and turned into metric
families only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class RouteRecorder:
    """Counts and latency buckets of one route."""

    __slots__ = ("backend", "buckets", "codes", "route", "total_seconds")

    def __init__(self, route: str, backend: str) -> None:
        self.route = route
        self.backend = backend
        self.codes: Counter[str] = Counter()
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total_seconds = 0.0

    def observe(self, seconds: float, code: str) -> None:
        self.codes[code] += 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total_seconds += seconds


class Metrics:
    def __init__(self) -> None:
        self._routes: list[RouteRecorder] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def recorder(self, route: str, backend: str) -> RouteRecorder:
        recorder = RouteRecorder(route, backend)
        self._routes.append(recorder)
        return recorder

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "agentpersistence_requests",
            "Requests served, by route, backend and outcome code.",
            labels=["route", "backend", "code"],
        )
        latency = HistogramMetricFamily(
            "agentpersistence_request_duration_seconds",
            "Time from a request's arrival to its answer, by route and backend.",
            labels=["route", "backend"],
        )
        for r in self._routes:
            for code, count in sorted(r.codes.items()):
                requests.add_metric([r.route, r.backend, code], count)
            cumulative, running = [], 0
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], r.buckets, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            latency.add_metric([r.route, r.backend], cumulative, r.total_seconds)
        yield requests
        yield latency

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
