"""catdog serve's own endpoints: GET /healthz (a probe: no token), and behind the token GET /models,
GET /metrics, the page (GET /) and POST /predict."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from catdog.core.config import ServeParams
from catdog.serving.admission import BodyTooLarge, limited
from catdog.serving.client_errors import public
from catdog.serving.parts import Parts
from catdog.serving.setup import ServeSetup

PAGE = Path(__file__).with_name("serve_page.html")


def health_router(parts: Parts) -> APIRouter:
    router, holder = APIRouter(), parts.holder

    @router.get("/healthz")
    async def healthz():
        if holder.current is None:
            return JSONResponse({"status": "not ready", "reason": public(holder.problem)}, status_code=503)
        return {"status": "ready", "model_version": holder.current.version}

    return router


def api_router(setup: ServeSetup, parts: Parts) -> APIRouter:
    router, params, registry = APIRouter(), setup.params, setup.registry
    metrics, admission, holder, answering = parts.metrics, parts.admission, parts.holder, parts.answering

    @router.get("/models")
    async def models():
        cards = await asyncio.to_thread(registry.cards)
        return {
            "serving": holder.current.version if holder.current else None,
            "following": params.model,
            "shadow": holder.shadow.version if holder.shadow else None,
            "models": [
                {
                    "version": c["version"],
                    "status": c["status"],
                    "accuracy": c["metrics"]["accuracy"],
                    "created": c["created"],
                }
                for c in cards
            ],
        }

    @router.get("/metrics")
    async def prometheus():
        metrics.inflight.set(admission.bytes_in_flight)
        metrics.shadow_dropped.set(parts.batcher.shadow_dropped)
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @router.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text()

    @router.post("/predict")
    async def predict(request: Request, explain: bool = False):
        started = time.perf_counter()
        served = holder.current  # this request is answered by this model, whatever happens meanwhile
        if served is None:
            return JSONResponse({"detail": public(f"no model loaded yet: {holder.problem}")}, status_code=503)
        declared = int(request.headers.get("content-length") or setup.body_limit)  # chunked: the most allowed
        if declared > setup.body_limit:
            raise HTTPException(413, _too_large_message(params))
        with admission.request_bytes(declared):  # over budget: 503 at once, the body left unread
            uploads = await _uploads(request, params, setup.body_limit)
            results = await answering.answer(_read_in_turn(uploads), served, started, explain)
        good = sum(r.get("error") is None for r in results)
        metrics.images.inc(good)
        metrics.rejected.inc(len(results) - good)
        metrics.latency.observe(time.perf_counter() - started)
        return JSONResponse(
            {"model_version": served.version, "results": results}, status_code=200 if good == len(results) else 422
        )

    return router


async def _uploads(request: Request, params: ServeParams, body_limit: int) -> list:
    """The request's files, parsed as the body streams in (files past 1 MB are spooled to disk)."""
    try:
        form = await Request(request.scope, limited(request.receive, body_limit)).form(
            max_files=params.max_files, max_fields=params.max_files
        )
    except BodyTooLarge:
        raise HTTPException(413, _too_large_message(params)) from None
    uploads = [value for _, value in form.multi_items() if not isinstance(value, str)]
    if not uploads:
        raise HTTPException(400, "no files: send one or more images as multipart form fields named 'files'")
    for upload in uploads:
        if upload.size is not None and upload.size > params.max_upload_bytes:
            raise HTTPException(
                413,
                f"{upload.filename}: {upload.size:,} bytes is over the limit of "
                f"{params.max_upload_bytes:,} (serve.max_upload_bytes)",
            )
    return uploads


async def _read_in_turn(uploads) -> AsyncIterator[tuple[str, bytes]]:
    for upload in uploads:
        data = await upload.read()
        await upload.close()
        yield upload.filename, data


def _too_large_message(params: ServeParams) -> str:
    return (
        f"request too large: at most {params.max_files} files of {params.max_upload_bytes:,} bytes each "
        "(serve.max_files, serve.max_upload_bytes)"
    )
