"""`catdog serve`: the registry's production model over HTTP, with a drop-a-photo page.

    POST /predict   multipart files -> per file: label, p_dog, the model version that answered
                    (?explain=1: and a Grad-CAM why-map of each, as a PNG data URL)
    GET  /healthz   200 once a model is loaded, else 503 with the reason
    GET  /models    the registry's versions and the one serving
    GET  /metrics   Prometheus text: requests by outcome, latency, images, batch sizes, model,
                    answers and low-confidence answers per version, back-pressure refusals
    GET  /          the page
    GET  /label     the labelling queue (catdog/serving/label_routes.py)

Every answered image is appended to the prediction log (catdog/monitoring/prediction_log.py) before its
answer is sent. Back-pressure (catdog/serving/admission.py) bounds the bytes and images in flight.

Concurrent requests share model calls (`Batcher`): one call on a batch of 32 costs far less per
image than 32 calls of one on this CPU. The serving model follows the registry's production
version (`ModelHolder`): a request takes the model current when it arrives and is answered by
it alone, so a promotion or rollback never fails or mixes a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from catdog.monitoring.prediction_log import SHADOW_LOG, PredictionLog
from catdog.serving.admission import Admission, Overloaded
from catdog.serving.answering import Answering
from catdog.serving.auth import TokenAuth, check_binding
from catdog.serving.batching import Batcher
from catdog.serving.metrics import Metrics, count_requests
from catdog.serving.model_holder import ModelHolder, warm_sizes
from catdog.serving.parts import Parts
from catdog.serving.routes import api_router, health_router
from catdog.serving.setup import ServeSetup
from catdog.serving.v2_routes import v2_probes, v2_router


def build_parts(setup: ServeSetup) -> Parts:
    """The metrics, budgets, model holder, batcher and answering of one server, wired together."""
    params = setup.params
    metrics = Metrics()
    admission = Admission(params.max_inflight_bytes, params.max_queued_images)
    holder = ModelHolder(
        setup.registry, params.model, on_change=metrics.serving, warm_sizes=warm_sizes(params.max_batch_size)
    )

    def on_batch(images: int, seconds: float) -> None:
        metrics.batch_size.observe(images)
        admission.answered(images, seconds)

    batcher = Batcher(
        params.max_batch_size,
        params.max_wait_ms / 1000,
        on_batch=on_batch,
        shadow_backlog=params.shadow_backlog,
        shadow_share=params.shadow_share,
    )
    answering = Answering(setup, batcher, admission, metrics)
    if params.shadow == "candidate":
        holder.follow_shadow = True
        # the shadow's answers go to the prediction log, or to a log of their own without one
        answering.shadow_log = answering.log or answering.recorder(
            PredictionLog(setup.serving_dir / SHADOW_LOG).append, "shadow answers"
        )
        answering.shadow_model = lambda: holder.shadow
        batcher.on_shadow = answering.log_shadow
    return Parts(metrics, admission, holder, batcher, answering, TokenAuth(setup.token))


def create_app(setup: ServeSetup) -> FastAPI:
    parts = build_parts(setup)

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        workers = [
            asyncio.create_task(parts.batcher.run()),
            asyncio.create_task(parts.holder.watch(setup.params.reload_seconds)),
        ]
        yield
        for worker in workers:
            worker.cancel()
        parts.batcher.close()
        parts.answering.close()

    app = FastAPI(title="catdog", description="cat or dog, from the registry's production model", lifespan=lifespan)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded):
        parts.metrics.overloaded.inc()
        return JSONResponse({"detail": error.reason}, status_code=503, headers={"Retry-After": str(error.retry_after)})

    app.middleware("http")(count_requests(parts.metrics))
    app.include_router(health_router(parts))  # a platform's probes send no token
    app.include_router(v2_probes(parts.holder))
    token = [Depends(parts.auth)]
    app.include_router(api_router(setup, parts), dependencies=token)
    app.include_router(v2_router(setup, parts.holder, parts.answering, parts.admission), dependencies=token)
    if setup.labels is not None:
        from catdog.serving.label_routes import label_router

        app.include_router(
            label_router(setup.labels, parts.holder, parts.batcher, setup.max_pixels), dependencies=token
        )
    return app


# ---------------------------------------------------------------- entry point


def run(setup: ServeSetup) -> None:
    """Serve until interrupted. Refuses a non-loopback address without a token."""
    import uvicorn

    params = setup.params
    check_binding(params.host, setup.token)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    app = create_app(setup)
    print(
        f"catdog serve: http://{params.host}:{params.port}/ (model: {params.model}, batches of up to "
        f"{params.max_batch_size}, waiting {params.max_wait_ms} ms){'; token required' if setup.token else ''}"
        f"{f'; logging to {setup.serving_dir}' if params.log_predictions else ''}",
        flush=True,
    )
    uvicorn.run(app, host=params.host, port=params.port, log_level="warning", access_log=False)
