"""Model calls shared by concurrent requests: the Batcher, and the shadow candidate's work on its idle time."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from catdog.serving.predict import LoadedModel

log = logging.getLogger("catdog.serving")


@dataclass
class _Pending:
    served: LoadedModel
    image: np.ndarray
    answer: asyncio.Future


_WAKE = object()  # put in the batcher's queue to wake it for shadow work


@dataclass(frozen=True)
class _Shadowed:
    model: LoadedModel  # the shadow candidate
    image: np.ndarray
    record: dict  # production's log record of the same image


class Batcher:
    """Collects images from concurrent requests into model calls of at most `max_size` images.

    The first image waits at most `max_wait` seconds for company; while a call runs, new images
    queue up and form the next batch at once. Only images for the same model share a call. Calls
    run one at a time in a dedicated thread (TensorFlow uses both cores for each)."""

    def __init__(
        self,
        max_size: int,
        max_wait: float,
        on_batch: Callable[[int, float], None] = lambda n, seconds: None,
        shadow_backlog: int = 1024,
        shadow_share: float = 0.0,
    ):
        self.max_size, self.max_wait, self.on_batch = max_size, max_wait, on_batch
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catdog-predict")
        # Shadow scoring takes only the model's idle time: its backlog is bounded, the oldest dropped.
        self.shadow: collections.deque[_Shadowed] = collections.deque(maxlen=shadow_backlog)
        self.shadow_dropped = 0
        self.shadow_share, self._shadow_credit = shadow_share, 0.0  # shadow images per served image, under load
        self.on_shadow: Callable[[list[_Shadowed], list[float]], None] = lambda items, scores: None

    def shadow_score(self, items: list[_Shadowed]) -> None:
        """Queue images for the shadow model; never waits (a full backlog drops its oldest)."""
        for item in items:
            if len(self.shadow) == self.shadow.maxlen:
                self.shadow_dropped += 1
            self.shadow.append(item)
        if items and self.queue.empty():
            self.queue.put_nowait(_WAKE)  # an idle batcher waits on the queue: the shadow's turn now

    async def _shadow_batch(self, size: int = 1) -> None:
        # Small batches: a request arriving meanwhile waits for at most that (batches of 32 held the
        # model ~2 s and took served p99 to 2.5x); per image a model call costs the same at any size here.
        model, batch = self.shadow[0].model, []
        while self.shadow and len(batch) < size and self.shadow[0].model is model:
            batch.append(self.shadow.popleft())
        from catdog.model.network import predict_p_dog

        images = np.stack([item.image for item in batch])[..., np.newaxis]
        try:
            scores = await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: predict_p_dog(model.model, [images], model.flip_tta)
            )
        except Exception as error:  # the shadow never disturbs serving
            log.error("serve: shadow scoring failed: %s", error)
            return
        self.on_shadow(batch, scores.tolist())

    async def p_dog(self, served: LoadedModel, images: list[np.ndarray]) -> list[float]:
        loop = asyncio.get_running_loop()
        pending = [_Pending(served, image, loop.create_future()) for image in images]
        for item in pending:
            self.queue.put_nowait(item)
        return list(await asyncio.gather(*(item.answer for item in pending)))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        waiting: list[_Pending] = []
        while True:
            if not waiting:
                if self.shadow and self.queue.empty():  # idle: the shadow's turn, one batch at a time
                    await self._shadow_batch()
                    continue
                first = await self.queue.get()
                if first is _WAKE:
                    continue
                waiting.append(first)
            deadline = loop.time() + self.max_wait
            while len(waiting) < self.max_size:
                try:
                    waiting.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                if loop.time() >= deadline:
                    break
                try:
                    waiting.append(await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
                except TimeoutError:
                    break
            waiting = [item for item in waiting if item is not _WAKE]
            if not waiting:
                continue
            served = waiting[0].served
            batch = [item for item in waiting if item.served is served][: self.max_size]
            chosen = {id(item) for item in batch}
            waiting = [item for item in waiting if id(item) not in chosen]
            await self._answer(served, batch)
            if self.shadow and self.shadow_share:  # under load the shadow still gets its share of model time
                self._shadow_credit += len(batch) * self.shadow_share
                if self._shadow_credit >= 1:
                    size = int(self._shadow_credit)
                    self._shadow_credit -= size
                    await self._shadow_batch(size)

    async def _answer(self, served: LoadedModel, batch: list[_Pending]) -> None:
        from catdog.model.network import predict_p_dog

        images = np.stack([item.image for item in batch])[..., np.newaxis]
        started = time.perf_counter()
        try:
            scores = await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: predict_p_dog(served.model, [images], served.flip_tta)
            )
        except Exception as error:
            for item in batch:
                if not item.answer.done():
                    item.answer.set_exception(error)
            return
        self.on_batch(len(batch), time.perf_counter() - started)
        for item, score in zip(batch, scores.tolist()):
            if not item.answer.done():  # its request may have been cancelled
                item.answer.set_result(score)

    async def why_maps(self, served: LoadedModel, images: list[np.ndarray]) -> list[bytes]:
        """Grad-CAM maps over the images as PNG files, computed on the model's thread between batches."""
        from catdog.model.why_maps import grad_cam, overlay_png

        def compute() -> list[bytes]:
            pixels = np.stack(images)
            return [overlay_png(p, h) for p, h in zip(pixels, grad_cam(served.model, pixels, served.threshold))]

        return await asyncio.get_running_loop().run_in_executor(self.executor, compute)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
