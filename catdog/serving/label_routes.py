"""The labelling queue over HTTP, in `catdog serve` (same token rules as the rest).

GET  /label                 the page: one photo at a time, the model's guess, cat / dog / skip / not a cat or dog
GET  /label/next?skip=a,b   the least sure photo not skipped: sha256, p_dog, guess, how many are left
GET  /label/image/{sha256}  the photo
GET  /label/why/{sha256}    where the model looked (Grad-CAM on the last convolution), PNG
POST /label/{sha256}        {"label": "cat" | "dog" | "not_cat_or_dog"}: writes it into the training data
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from catdog.data.images import ImageError, load_model_input
from catdog.monitoring.labelling import (
    ANSWERS,
    Candidate,
    LabelError,
    LabelSetup,
    candidates,
    rank,
    record_answer,
    why_not_queued,
)
from catdog.serving.client_errors import public

PAGE = Path(__file__).with_name("label_page.html")


class Queue:
    """The candidates scored by the serving model; each photo is scored once per model version."""

    def __init__(self, setup: LabelSetup, max_pixels: int):
        self.setup, self.max_pixels = setup, max_pixels
        self.scores: dict[tuple[str, str], float] = {}

    async def ranked(self, served, batcher) -> tuple[list[Candidate], dict[str, float]]:
        found = await asyncio.to_thread(candidates, self.setup)
        todo = [c for c in found if (served.version, c.sha256) not in self.scores]
        readable, pixels = [], []
        for candidate in todo:
            try:
                pixels.append(
                    await asyncio.to_thread(
                        load_model_input, candidate.path, served.image_size, served.resize, max_pixels=self.max_pixels
                    )
                )
                readable.append(candidate)
            except (ImageError, OSError):
                continue  # an unreadable inbox file is not a photo to label
        for start in range(0, len(pixels), 32):
            scored = await batcher.p_dog(served, pixels[start : start + 32])
            for candidate, p_dog in zip(readable[start : start + 32], scored):
                self.scores[(served.version, candidate.sha256)] = p_dog
        p_dog = {
            c.sha256: self.scores[(served.version, c.sha256)]
            for c in found
            if (served.version, c.sha256) in self.scores
        }
        return rank([c for c in found if c.sha256 in p_dog], p_dog), p_dog


def label_router(setup: LabelSetup, holder, batcher, max_pixels: int) -> APIRouter:
    router, queue = APIRouter(), Queue(setup, max_pixels)

    def serving():
        if holder.current is None:
            raise HTTPException(503, public(f"no model loaded yet: {holder.problem}"))
        return holder.current

    async def find(sha256: str, served) -> tuple[Candidate | None, float | None]:
        ranked, p_dog = await queue.ranked(served, batcher)
        match = next((c for c in ranked if c.sha256 == sha256), None)
        return match, p_dog.get(sha256)

    async def queued(sha256: str):
        served = serving()
        candidate, _ = await find(sha256, served)
        if candidate is None:
            raise HTTPException(404, f"{sha256} is not in the labelling queue")
        return served, candidate

    @router.get("/label", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text()

    @router.get("/label/next")
    async def next_photo(skip: str = ""):
        served = serving()
        skipped = set(filter(None, skip.split(",")))
        ranked, p_dog = await queue.ranked(served, batcher)
        waiting = [c for c in ranked if c.sha256 not in skipped]
        if not waiting:
            return {"remaining": 0, "skipped": len(ranked), "item": None, "model_version": served.version}
        first = waiting[0]
        return {
            "remaining": len(waiting),
            "skipped": len(ranked) - len(waiting),
            "model_version": served.version,
            "item": {
                "sha256": first.sha256,
                "p_dog": round(p_dog[first.sha256], 6),
                "guess": "dog" if p_dog[first.sha256] >= served.threshold else "cat",
                "image": f"label/image/{first.sha256}",
            },
        }

    @router.get("/label/image/{sha256}")
    async def image(sha256: str):
        _, candidate = await queued(sha256)
        return FileResponse(candidate.path)

    @router.get("/label/why/{sha256}")
    async def why(sha256: str):
        """The Grad-CAM map of a queued photo, as PNG."""
        served, candidate = await queued(sha256)
        pixels = await asyncio.to_thread(
            load_model_input, candidate.path, served.image_size, served.resize, max_pixels=max_pixels
        )
        [png] = await batcher.why_maps(served, [pixels])
        return Response(png, media_type="image/png")

    @router.post("/label/{sha256}")
    async def answer(sha256: str, request: Request):
        served = serving()
        try:
            body = await request.json()
        except ValueError:
            body = None
        label = body.get("label") if isinstance(body, dict) else None
        if label not in ANSWERS:
            return JSONResponse(
                {"detail": f'send JSON {{"label": ...}} with one of {", ".join(ANSWERS)}'}, status_code=400
            )
        candidate, p_dog = await find(sha256, served)
        if candidate is None:
            reason = await asyncio.to_thread(why_not_queued, setup, sha256)
            return JSONResponse({"detail": reason}, status_code=409 if "already" in reason else 404)
        who = getattr(request.state, "who", "local")
        try:
            record = await asyncio.to_thread(record_answer, setup, candidate, label, who, served.version, p_dog)
        except LabelError as error:
            return JSONResponse({"detail": public(str(error))}, status_code=error.status)
        except OSError as error:  # the labelled folder full, read-only or gone: nothing was recorded
            told = public(f"the label could not be written, nothing was recorded: {error}")
            return JSONResponse({"detail": told + " (fix: make the labelled folder writable)"}, status_code=503)
        return record

    return router
