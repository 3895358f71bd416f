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
# An answer's steps run from a fraction of a millisecond (the prompt) to seconds (retrieval
# under load): the request buckets would put every fast step in one 0-5 ms bucket.
STEP_BUCKETS = (0.0005, 0.001, 0.002, 0.005, *LATENCY_BUCKETS[1:])
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

        self.llm_calls = Counter(
            "ragline_llm_calls", "Model calls by model, kind and outcome",
            ["model", "kind", "outcome"], registry=self.registry,
        )
        self.llm_tokens = Counter(
            "ragline_llm_tokens", "Tokens by model and direction (prompt or completion)",
            ["model", "direction"], registry=self.registry,
        )
        self.llm_cost = Counter(
            "ragline_llm_cost_usd", "Cost in USD by model (calls of unknown price add nothing)",
            ["model"], registry=self.registry,
        )
        self.llm_first_token = Histogram(
            "ragline_llm_time_to_first_token_seconds", "Time to the model's first token, by model",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.chat_steps = Histogram(
            "ragline_chat_step_seconds", "Steps of an answer: history, refine, keywords, retrieval, prompt, first_token",
            ["step"], buckets=STEP_BUCKETS, registry=self.registry,
        )
        self.response_cache = Counter(
            "ragline_response_cache", "Response cache lookups by outcome (hit, miss, bypass: a sampled call)",
            ["outcome"], registry=self.registry,
        )
        self.intent_routes = Counter(
            "ragline_intent_routes", "Messages routed by intent routing, by intent (fallback: none fit) and "
            "deciding stage (embedding, llm, fallback)", ["intent", "method"], registry=self.registry,
        )
        self.intent_latency = Histogram(
            "ragline_intent_classify_seconds", "Time to classify a message's intent, by deciding stage",
            ["method"], buckets=STEP_BUCKETS, registry=self.registry,
        )
        self.task_queue = Gauge(
            "ragline_task_queue", "Unfinished tasks of the ingestion/job queue by state, read at scrape time",
            ["state"], registry=self.registry,
        )

    def observe_usage(self, row: Any) -> None:
        """Account one model call (a usage row) in the model metrics."""
        self.llm_calls.labels(model=row.model, kind=row.kind, outcome=row.outcome).inc()
        self.llm_tokens.labels(model=row.model, direction="prompt").inc(row.prompt_tokens)
        self.llm_tokens.labels(model=row.model, direction="completion").inc(row.completion_tokens)
        if row.cost:
            self.llm_cost.labels(model=row.model).inc(row.cost)
        if row.ttft_ms is not None:
            self.llm_first_token.labels(model=row.model).observe(row.ttft_ms / 1000)

    def observe_intent(self, intent: str, method: str, seconds: float) -> None:
        """One routing decision."""
        self.intent_routes.labels(intent=intent, method=method).inc()
        self.intent_latency.labels(method=method).observe(seconds)

    def observe_steps(self, timings: dict[str, float]) -> None:
        """The step timings of one answer (``retrieval_ms`` → step ``retrieval``)."""
        for name, milliseconds in timings.items():
            self.chat_steps.labels(step=name.removesuffix("_ms")).observe(milliseconds / 1000)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_latency.labels(route=route, method=method).observe(seconds)


class MeteredUsageSink:
    """A usage sink that also feeds the model metrics, then hands the row on."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def record(self, row: Any) -> None:
        self.metrics.observe_usage(row)
        await self.inner.record(row)

    def record_soon(self, row: Any) -> None:
        self.metrics.observe_usage(row)
        self.inner.record_soon(row)


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
