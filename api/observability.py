"""Metrics, the event-loop lag sampler and JSON-line logging.

Each app owns its own Prometheus ``CollectorRegistry`` (not the process-global one), so
several apps in one test process never share or double-register counters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class Metrics:
    """Every metric Ragline exports, registered in one registry per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ragline_http_requests", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.request_latency = Histogram(
            "ragline_http_request_duration_seconds", "Time to the response headers, per route",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.loop_lag = Gauge(
            "ragline_event_loop_lag_seconds", "Latest event-loop lag sample", registry=self.registry,
        )
        self.loop_lag_histogram = Histogram(
            "ragline_event_loop_lag_histogram_seconds", "Event-loop lag samples",
            buckets=LAG_BUCKETS, registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_latency.labels(route=route, method=method).observe(seconds)


class LoopLagMonitor:
    """Samples how late the event loop wakes a sleeper; a blocked loop shows up here first."""

    def __init__(self, metrics: Metrics, interval: float) -> None:
        self.metrics = metrics
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def _sample_forever(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.perf_counter() - started - self.interval)
            self.metrics.loop_lag.set(lag)
            self.metrics.loop_lag_histogram.observe(lag)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample_forever(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line; fields passed with ``extra={"fields": {...}}`` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Route Ragline's logs to stderr as JSON lines; quiet the chattiest libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore", "hypercorn.access", "urllib3", "elastic_transport"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
