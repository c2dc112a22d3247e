"""Answering uploads: each file converted (the one conversion), scored through the batcher, logged
before the answer is sent."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from catdog.data.images import (
    ImageError,
    ImageFacts,
    load_model_input_and_facts,
    with_tone,
)
from catdog.monitoring.prediction_log import InputStore, PredictionLog, Recorder, utc_now
from catdog.serving.admission import Admission
from catdog.serving.batching import Batcher, _Shadowed
from catdog.serving.client_errors import public
from catdog.serving.metrics import Metrics
from catdog.serving.predict import LoadedModel, label_of
from catdog.serving.setup import ServeSetup


@dataclass(frozen=True)
class Converted:
    """One upload after conversion: its model input and facts, or why it could not be read."""

    file: str
    sha256: str
    pixels: np.ndarray | None
    facts: ImageFacts | None
    error: str | None = None


class Answering:
    """Uploads to answers: each file read and converted in turn on one of two decoder threads (the
    bytes and decoded pixels in memory are bounded by those), the images batched for the model,
    the answers logged before they are sent."""

    def __init__(self, setup: ServeSetup, batcher: Batcher, admission: Admission, metrics: Metrics):
        self.setup, self.batcher, self.admission, self.metrics = setup, batcher, admission, metrics
        self.decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="catdog-decode")
        self.prediction_log = PredictionLog(setup.serving_dir) if setup.params.log_predictions else None
        self.log = self.recorder(self.prediction_log.append, "predictions") if self.prediction_log else None
        self.inputs = InputStore(setup.serving_dir / "inputs") if setup.params.keep_inputs else None
        self.keeping = self.recorder(lambda kept: [self.inputs.keep(*item) for item in kept], "inputs")
        self.shadow_log: Recorder | None = None  # with serve.shadow (see create_app)
        self.shadow_model: Callable[[], LoadedModel | None] = lambda: None

    def recorder(self, write, what: str) -> Recorder:
        """`write` that never fails a request: losses are counted in /metrics and said once."""
        return Recorder(write, self.setup.serving_dir, what, self.metrics.unrecorded.labels(what).inc)

    def convert(self, name: str, data: bytes, served: LoadedModel) -> Converted:
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            pixels, facts = load_model_input_and_facts(
                data, served.image_size, served.resize, max_pixels=self.setup.max_pixels
            )
        except (ImageError, OSError) as error:
            return Converted(name, sha256, None, None, public(str(error)))
        if self.inputs is not None:
            self.keeping.append([(data, sha256, facts.format)])
        return Converted(name, sha256, pixels, facts)

    @staticmethod
    def from_pixels(name: str, pixels: np.ndarray) -> Converted:
        """An image sent already converted (the v2 protocol's `pixels`): its facts from the pixels."""
        from PIL import Image

        facts = with_tone(ImageFacts(None, "L", pixels.shape[1], pixels.shape[0]), Image.fromarray(pixels, "L"))
        return Converted(name, hashlib.sha256(pixels.tobytes()).hexdigest(), pixels, facts)

    async def answer(
        self, files: AsyncIterator[tuple[str, bytes]], served: LoadedModel, started: float, explain: bool = False
    ) -> list[dict]:
        """Encoded image files (name, bytes), read and converted one at a time, to answers."""
        loop, converted = asyncio.get_running_loop(), []
        async for name, data in files:
            converted.append(await loop.run_in_executor(self.decoder, self.convert, name, data, served))
            del data  # let this file's bytes go before the next one is read: one upload in memory at a time
        return await self.answer_converted(converted, served, started, explain)

    async def answer_converted(
        self, converted: list[Converted], served: LoadedModel, started: float, explain: bool = False
    ) -> list[dict]:
        images = [c.pixels for c in converted if c.error is None]
        scores = await self._scores(served, images)
        why = [_data_url(png) for png in await self.batcher.why_maps(served, images)] if explain and images else None
        results, records = self._answers(converted, scores, why, served, started)
        if self.log is not None:
            self.log.append(records)
        shadow = self.shadow_model()
        if shadow is not None and shadow.version != served.version:
            answered = [(c.pixels, r) for c, r in zip(converted, records) if c.error is None]
            self.batcher.shadow_score([_Shadowed(shadow, pixels, record) for pixels, record in answered])
        return results

    def log_shadow(self, items: list[_Shadowed], scores: list[float]) -> None:
        """The shadow's answers, each beside production's for the same image (agreement needs both)."""
        now = utc_now().isoformat(timespec="milliseconds")
        records = [
            {
                **item.record,
                "time": now,
                "model_version": item.model.version,
                "p_dog": round(p, 6),
                "label": label_of(p, item.model.threshold),
                "latency_ms": None,
                "shadow": True,
                "production_version": item.record["model_version"],
                "production_p_dog": item.record["p_dog"],
                "production_label": item.record["label"],
            }
            for item, p in zip(items, scores)
        ]
        self.metrics.shadow.inc(len(records))
        self.shadow_log.append(records)

    async def _scores(self, served: LoadedModel, images: list[np.ndarray]) -> list[float]:
        with self.admission.queued_images(len(images)):  # over the budget: 503 + Retry-After
            self.metrics.queued.set(self.admission.images_waiting)
            scores = await self.batcher.p_dog(served, images) if images else []
        self.metrics.queued.set(self.admission.images_waiting)
        self.metrics.answered(served.version, scores, self.setup.monitor.uncertain_band)
        return scores

    @staticmethod
    def _answers(
        converted: list[Converted], scores: list[float], why: list[str] | None, served: LoadedModel, started: float
    ) -> tuple[list[dict], list[dict]]:
        """The answers to send and the log records, in upload order."""
        results, records, scores, maps = [], [], iter(scores), None if why is None else iter(why)
        latency_ms, now = round(1000 * (time.perf_counter() - started), 1), utc_now().isoformat(timespec="milliseconds")
        request_id = os.urandom(6).hex()
        for item in converted:
            p_dog = label = None
            if item.error is not None:
                results.append({"file": item.file, "error": item.error})
            else:
                p_dog = round(next(scores), 6)
                label = label_of(p_dog, served.threshold)
                results.append(
                    {
                        "file": item.file,
                        "label": label,
                        "p_dog": p_dog,
                        "model_version": served.version,
                        **({"why": next(maps)} if maps is not None else {}),
                    }
                )
            records.append(_record(now, request_id, item, served.version, p_dog, label, latency_ms))
        return results, records

    def close(self) -> None:
        self.decoder.shutdown(wait=False, cancel_futures=True)
        if self.prediction_log is not None:
            self.prediction_log.close()


def _data_url(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode()


def _record(
    now: str, request_id: str, item: Converted, version: str, p_dog: float | None, label: str | None, latency_ms: float
) -> dict:
    facts = item.facts
    return {
        "time": now,
        "request": request_id,
        "file": item.file,
        "sha256": item.sha256,
        "model_version": version,
        "p_dog": p_dog,
        "label": label,
        "latency_ms": latency_ms,
        "format": facts.format if facts else None,
        "width": facts.width if facts else None,
        "height": facts.height if facts else None,
        "aspect": round(facts.width / facts.height, 4) if facts else None,
        "brightness": facts.brightness if facts else None,
        "contrast": facts.contrast if facts else None,
        "error": item.error,
    }
