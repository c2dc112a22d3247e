"""Prometheus metrics of catdog serve (GET /metrics) and how a response counts in them."""

from __future__ import annotations

from fastapi import Request, Response

from catdog.serving.predict import LoadedModel

ENDPOINTS = {"/", "/healthz", "/models", "/metrics", "/predict", "/label", "/v2"}


class Metrics:
    """Prometheus metrics in a registry of this app's own (several apps can live in one process)."""

    LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "catdog_requests", "HTTP requests by endpoint and outcome", ["endpoint", "outcome"], registry=self.registry
        )
        self.latency = Histogram(
            "catdog_predict_seconds", "POST /predict latency", registry=self.registry, buckets=self.LATENCY_BUCKETS
        )
        self.images = Counter("catdog_images_predicted", "images answered with a prediction", registry=self.registry)
        self.rejected = Counter(
            "catdog_images_rejected", "uploaded files that could not be read as images", registry=self.registry
        )
        self.batch_size = Histogram(
            "catdog_batch_size",
            "images per model call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.model = Gauge(
            "catdog_model_info", "the model version serving (value 1)", ["version"], registry=self.registry
        )
        self.reloads = Counter("catdog_model_loads", "models loaded (start and hot reloads)", registry=self.registry)
        self.unrecorded = Counter(
            "catdog_unrecorded",
            "records that could not be written (a full or read-only disk, a vanished folder), by kind",
            ["what"],
            registry=self.registry,
        )
        self.served = Counter(
            "catdog_served_images", "images answered, by model version", ["version"], registry=self.registry
        )
        self.uncertain = Counter(
            "catdog_uncertain_images",
            "answers with |p_dog - 0.5| below monitor.uncertain_band, by model version",
            ["version"],
            registry=self.registry,
        )
        self.p_dog = Histogram(
            "catdog_p_dog",
            "p(dog) of the answers",
            registry=self.registry,
            buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)),
        )
        self.overloaded = Counter(
            "catdog_overloaded", "requests refused with 503 and Retry-After by a budget", registry=self.registry
        )
        self.inflight = Gauge(
            "catdog_inflight_bytes", "request bytes admitted and not yet answered", registry=self.registry
        )
        self.queued = Gauge("catdog_queued_images", "converted images waiting for the model", registry=self.registry)
        self.shadow = Counter("catdog_shadow_images", "images the shadow candidate scored", registry=self.registry)
        self.shadow_dropped = Gauge(
            "catdog_shadow_dropped", "images dropped from the shadow's full backlog", registry=self.registry
        )

    def answered(self, version: str, scores: list[float], uncertain_band: float) -> None:
        self.served.labels(version=version).inc(len(scores))
        self.uncertain.labels(version=version).inc(sum(abs(p - 0.5) < uncertain_band for p in scores))
        for p in scores:
            self.p_dog.observe(p)

    def serving(self, loaded: LoadedModel) -> None:
        self.model.clear()
        self.model.labels(version=loaded.version).set(1)
        self.reloads.inc()

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def outcome_of(response: Response) -> str:
    status = response.status_code
    if status == 503 and "retry-after" in response.headers:
        return "overloaded"
    return {200: "ok", 401: "unauthorized", 413: "too_large", 422: "bad_image", 503: "not_ready"}.get(
        status, "bad_request" if 400 <= status < 500 else "error" if status >= 500 else "ok"
    )


def endpoint_of(path: str) -> str:
    """The endpoint a request counts under: its path, or the route family, or "other"."""
    return path if path in ENDPOINTS else next((p for p in ("/label", "/v2") if path.startswith(p)), "other")


def count_requests(metrics: Metrics):
    """An HTTP middleware counting every response (401s and 404s too) by endpoint and outcome."""

    async def count(request: Request, call_next):
        response = await call_next(request)
        metrics.requests.labels(endpoint=endpoint_of(request.url.path), outcome=outcome_of(response)).inc()
        return response

    return count
