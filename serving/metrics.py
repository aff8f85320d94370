"""Prometheus metrics: request counts and latencies, batch sizes, queue depth, grades given.

Each app owns its registry (tests create many apps in one process). `MetricsMiddleware` is plain ASGI
(no BaseHTTPMiddleware overhead) and labels requests by route template, never by raw path, so ids do
not explode the label space.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "refurbgrade_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "refurbgrade_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_size = Histogram(
            "refurbgrade_batch_size",
            "photos per model run",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=r,
        )
        self.inference = Histogram(
            "refurbgrade_inference_seconds",
            "model run time per batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.queue_depth = Gauge("refurbgrade_queue_depth", "photos waiting for the model", registry=r)
        self.inflight = Gauge("refurbgrade_inflight_gradings", "gradings being processed", registry=r)
        self.grades = Counter(
            "refurbgrade_grades", "grades given", ["standard", "grade", "needs_review"], registry=r
        )
        self.rejected = Counter("refurbgrade_rejected", "requests refused with 503", ["reason"], registry=r)
        self.model_info = Gauge("refurbgrade_model_info", "the active model", ["name", "version"], registry=r)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def _send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
