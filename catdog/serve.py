"""`catdog serve`: the registry's production model over HTTP, with a drop-a-photo page.

    POST /predict   multipart files -> per file: label, p_dog, the model version that answered
                    (?explain=1: and a Grad-CAM why-map of each, as a PNG data URL)
    GET  /healthz   200 once a model is loaded, else 503 with the reason
    GET  /models    the registry's versions and the one serving
    GET  /metrics   Prometheus text: requests by outcome, latency, images, batch sizes, model,
                    answers and low-confidence answers per version, back-pressure refusals
    GET  /          the page
    GET  /label     the labelling queue (catdog/label_routes.py)

Every answered image is appended to the prediction log (catdog/prediction_log.py) before its
answer is sent. Back-pressure (catdog/admission.py) bounds the bytes and images in flight.

Concurrent requests share model calls (`Batcher`): one call on a batch of 32 costs far less per
image than 32 calls of one on this CPU. The serving model follows the registry's production
version (`ModelHolder`): a request takes the model current when it arrives and is answered by
it alone, so a promotion or rollback never fails or mixes a request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from catdog.admission import Admission, Overloaded
from catdog.config import MonitorParams, ServeParams
from catdog.errors import CatdogError
from catdog.images import ImageError, ImageFacts, load_model_input_and_facts, with_tone
from catdog.labelling import LabelSetup
from catdog.prediction_log import SHADOW_LOG, InputStore, PredictionLog, utc_now
from catdog.predict import LoadedModel, label_of, load_for_prediction
from catdog.registry import PRODUCTION, Registry

TOKEN_VARIABLE = "CATDOG_SERVE_TOKEN"
PAGE = Path(__file__).with_name("serve_page.html")
ENDPOINTS = {"/", "/healthz", "/models", "/metrics", "/predict", "/label", "/v2"}
PAGES = {"/", "/label"}
PROBES = {"/healthz", "/v2/health/live", "/v2/health/ready"}  # a platform's probes send no token
log = logging.getLogger("catdog.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Only loopback may be served without a token: anything else reaches other machines."""
    if not is_loopback(host) and not token:
        raise CatdogError(f"binding to {host} makes the model reachable from other machines; set "
                          f"{TOKEN_VARIABLE} to a secret (clients send 'Authorization: Bearer <token>'), "
                          "or bind to 127.0.0.1")


# ---------------------------------------------------------------- the model that answers


class ModelHolder:
    """The model being served. With ref 'production' it follows the registry's production
    version; a fixed vNNNN never changes. Loads happen in a worker thread."""

    def __init__(self, registry: Registry, ref: str, on_change: Callable[[LoadedModel], None] = lambda m: None,
                 warm_sizes: tuple[int, ...] = (1,)):
        self.registry, self.ref, self.on_change, self.warm_sizes = registry, ref, on_change, warm_sizes
        self.current: LoadedModel | None = None
        self._other: LoadedModel | None = None
        self.shadow: LoadedModel | None = None  # serve.shadow: candidate
        self.follow_shadow = False
        self.problem = "loading the model"

    def wanted_version(self) -> str | None:
        if self.ref == PRODUCTION:
            return self.registry.state()["production"]
        return self.ref

    async def refresh(self) -> None:
        """Load the wanted version if it is not the one serving; a failure keeps the old one."""
        try:
            wanted = self.wanted_version()
            if wanted is None:
                self.problem = ("there is no production model yet: run `dvc repro` (or `make run`), or "
                                "`catdog models promote VERSION`; this server loads it as soon as there is one")
                return
            if self.current is not None and self.current.version == wanted:
                return
            loaded = await self._load(wanted)
        except Exception as error:  # a damaged or missing file: keep serving what we have
            self.problem = f"cannot load the model: {error}"
            log.error("serve: %s", self.problem)
            return
        previous, self.current = self.current, loaded
        log.warning("serve: now serving %s%s", loaded.version, f" (was {previous.version})" if previous else "")
        self.on_change(loaded)

    async def version(self, ref: str) -> LoadedModel:
        """A registry version other than the one serving (v2's /versions/vNNNN), loaded once: the
        last one asked for stays loaded."""
        if self._other is None or self._other.version != ref:
            self.registry.resolve(ref)  # an unknown version: RegistryError, before any loading
            self._other = await self._load(ref)
        return self._other

    async def _load(self, ref: str) -> LoadedModel:
        loaded = await asyncio.to_thread(load_for_prediction, self.registry, ref)
        await asyncio.to_thread(warm_up, loaded, self.warm_sizes)  # before it answers anyone
        return loaded

    async def refresh_shadow(self) -> None:
        """Follow the newest candidate the gate did not promote; none once it is promoted or superseded."""
        try:
            wanted = self.registry.newest_candidate()
            if wanted is None or (self.shadow is not None and self.shadow.version == wanted):
                self.shadow = None if wanted is None else self.shadow
                return
            self.shadow = await self._load(wanted)
            log.warning("serve: shadow scoring with candidate %s", wanted)
        except Exception as error:  # a shadow that cannot load never touches serving
            log.error("serve: no shadow: %s", error)
            self.shadow = None

    async def watch(self, seconds: float) -> None:
        while True:
            await self.refresh()
            if self.follow_shadow:
                await self.refresh_shadow()
            await asyncio.sleep(seconds)


def warm_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes to warm a model up with: powers of two up to the batcher's largest, and it."""
    return tuple(sorted({2**i for i in range(max_batch_size.bit_length()) if 2**i <= max_batch_size}
                        | {max_batch_size}))


def warm_up(loaded: LoadedModel, sizes: tuple[int, ...], rounds: int = 2) -> None:
    """Run a few batches of each size through a freshly loaded model, so that the first requests on
    it do not pay for TensorFlow's tracing (TF Serving's --enable_model_warmup answers the same)."""
    from catdog.model import predict_p_dog

    for size in sizes:
        batch = np.zeros((size, loaded.image_size, loaded.image_size, 1), np.uint8)
        for _ in range(rounds):
            predict_p_dog(loaded.model, [batch], loaded.flip_tta)


# ---------------------------------------------------------------- batching


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

    def __init__(self, max_size: int, max_wait: float,
                 on_batch: Callable[[int, float], None] = lambda n, seconds: None, shadow_backlog: int = 1024,
                 shadow_share: float = 0.0):
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
        from catdog.model import predict_p_dog

        images = np.stack([item.image for item in batch])[..., np.newaxis]
        try:
            scores = await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: predict_p_dog(model.model, [images], model.flip_tta))
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
        from catdog.model import predict_p_dog

        images = np.stack([item.image for item in batch])[..., np.newaxis]
        started = time.perf_counter()
        try:
            scores = await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: predict_p_dog(served.model, [images], served.flip_tta))
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
        from catdog.why_maps import grad_cam, overlay_png

        def compute() -> list[bytes]:
            pixels = np.stack(images)
            return [overlay_png(p, h) for p, h in zip(pixels, grad_cam(served.model, pixels, served.threshold))]

        return await asyncio.get_running_loop().run_in_executor(self.executor, compute)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- metrics


class Metrics:
    """Prometheus metrics in a registry of this app's own (several apps can live in one process)."""

    LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("catdog_requests", "HTTP requests by endpoint and outcome",
                                ["endpoint", "outcome"], registry=self.registry)
        self.latency = Histogram("catdog_predict_seconds", "POST /predict latency", registry=self.registry,
                                 buckets=self.LATENCY_BUCKETS)
        self.images = Counter("catdog_images_predicted", "images answered with a prediction",
                              registry=self.registry)
        self.rejected = Counter("catdog_images_rejected", "uploaded files that could not be read as images",
                                registry=self.registry)
        self.batch_size = Histogram("catdog_batch_size", "images per model call", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.model = Gauge("catdog_model_info", "the model version serving (value 1)", ["version"],
                           registry=self.registry)
        self.reloads = Counter("catdog_model_loads", "models loaded (start and hot reloads)", registry=self.registry)
        self.served = Counter("catdog_served_images", "images answered, by model version", ["version"],
                              registry=self.registry)
        self.uncertain = Counter("catdog_uncertain_images", "answers with |p_dog - 0.5| below "
                                 "monitor.uncertain_band, by model version", ["version"], registry=self.registry)
        self.p_dog = Histogram("catdog_p_dog", "p(dog) of the answers", registry=self.registry,
                               buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)))
        self.overloaded = Counter("catdog_overloaded", "requests refused with 503 and Retry-After by a budget",
                                  registry=self.registry)
        self.inflight = Gauge("catdog_inflight_bytes", "request bytes admitted and not yet answered",
                              registry=self.registry)
        self.queued = Gauge("catdog_queued_images", "converted images waiting for the model", registry=self.registry)
        self.shadow = Counter("catdog_shadow_images", "images the shadow candidate scored", registry=self.registry)
        self.shadow_dropped = Gauge("catdog_shadow_dropped", "images dropped from the shadow's full backlog",
                                    registry=self.registry)

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
        status, "bad_request" if 400 <= status < 500 else "error" if status >= 500 else "ok")


# ---------------------------------------------------------------- the app


class _TooLarge(Exception):
    pass


def _limited(receive, limit: int):
    """An ASGI receive that stops reading a request body once it passes `limit` bytes."""
    received = 0

    async def limited_receive():
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise _TooLarge
        return message

    return limited_receive


@dataclass(frozen=True)
class ServeSetup:
    """What one server needs, read once from params.yaml and the project's folders."""

    registry: Registry
    params: ServeParams
    monitor: MonitorParams
    max_pixels: int  # validate.max_pixels: the same guard as the pipeline's
    serving_dir: Path  # the prediction log and kept inputs (data/serving)
    labels: LabelSetup | None = None  # the labelling queue (GET /label)
    token: str | None = None  # CATDOG_SERVE_TOKEN: a secret, or name=secret,name=secret (labels say who)

    @property
    def tokens(self) -> dict[str, str]:
        """secret -> the name a label record gives as who."""
        if not self.token:
            return {}
        pairs = [item.partition("=") for item in self.token.split(",") if item.strip()]
        if not all(sep and name.strip() and secret.strip() for name, sep, secret in pairs):  # e.g. a base64 secret
            return {self.token: "token"}
        return {secret.strip(): name.strip() for name, _, secret in pairs}

    @property
    def body_limit(self) -> int:
        return self.params.max_files * self.params.max_upload_bytes + 2**16  # the multipart framing around the files


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
        self.log = PredictionLog(setup.serving_dir) if setup.params.log_predictions else None
        self.inputs = InputStore(setup.serving_dir / "inputs") if setup.params.keep_inputs else None
        self.shadow_log: PredictionLog | None = None  # with serve.shadow (see create_app)
        self.shadow_model: Callable[[], LoadedModel | None] = lambda: None

    def convert(self, name: str, data: bytes, served: LoadedModel) -> Converted:
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            pixels, facts = load_model_input_and_facts(data, served.image_size, served.resize,
                                                       max_pixels=self.setup.max_pixels)
        except (ImageError, OSError) as error:
            return Converted(name, sha256, None, None, str(error))
        if self.inputs is not None:
            self.inputs.keep(data, sha256, facts.format)
        return Converted(name, sha256, pixels, facts)

    @staticmethod
    def from_pixels(name: str, pixels: np.ndarray) -> Converted:
        """An image sent already converted (the v2 protocol's `pixels`): its facts from the pixels."""
        from PIL import Image

        facts = with_tone(ImageFacts(None, "L", pixels.shape[1], pixels.shape[0]), Image.fromarray(pixels, "L"))
        return Converted(name, hashlib.sha256(pixels.tobytes()).hexdigest(), pixels, facts)

    async def answer(self, files: AsyncIterator[tuple[str, bytes]], served: LoadedModel, started: float,
                     explain: bool = False) -> list[dict]:
        """Encoded image files (name, bytes), read and converted one at a time, to answers."""
        loop, converted = asyncio.get_running_loop(), []
        async for name, data in files:
            converted.append(await loop.run_in_executor(self.decoder, self.convert, name, data, served))
            del data
        return await self.answer_converted(converted, served, started, explain)

    async def answer_converted(self, converted: list[Converted], served: LoadedModel, started: float,
                               explain: bool = False) -> list[dict]:
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
        records = [{**item.record, "time": now, "model_version": item.model.version, "p_dog": round(p, 6),
                    "label": label_of(p, item.model.threshold), "latency_ms": None, "shadow": True,
                    "production_version": item.record["model_version"], "production_p_dog": item.record["p_dog"],
                    "production_label": item.record["label"]} for item, p in zip(items, scores)]
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
    def _answers(converted: list[Converted], scores: list[float], why: list[str] | None, served: LoadedModel,
                 started: float) -> tuple[list[dict], list[dict]]:
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
                results.append({"file": item.file, "label": label, "p_dog": p_dog, "model_version": served.version,
                                **({"why": next(maps)} if maps is not None else {})})
            records.append(_record(now, request_id, item, served.version, p_dog, label, latency_ms))
        return results, records

    def close(self) -> None:
        self.decoder.shutdown(wait=False, cancel_futures=True)
        if self.log is not None:
            self.log.close()


def _data_url(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode()


def _record(now: str, request_id: str, item: Converted, version: str, p_dog: float | None, label: str | None,
            latency_ms: float) -> dict:
    facts = item.facts
    return {"time": now, "request": request_id, "file": item.file, "sha256": item.sha256, "model_version": version,
            "p_dog": p_dog, "label": label, "latency_ms": latency_ms,
            "format": facts.format if facts else None, "width": facts.width if facts else None,
            "height": facts.height if facts else None,
            "aspect": round(facts.width / facts.height, 4) if facts else None,
            "brightness": facts.brightness if facts else None, "contrast": facts.contrast if facts else None,
            "error": item.error}


def create_app(setup: ServeSetup):
    params, registry = setup.params, setup.registry
    metrics = Metrics()
    admission = Admission(params.max_inflight_bytes, params.max_queued_images)
    holder = ModelHolder(registry, params.model, on_change=metrics.serving, warm_sizes=warm_sizes(params.max_batch_size))

    def on_batch(images: int, seconds: float) -> None:
        metrics.batch_size.observe(images)
        admission.answered(images, seconds)

    batcher = Batcher(params.max_batch_size, params.max_wait_ms / 1000, on_batch=on_batch,
                      shadow_backlog=params.shadow_backlog, shadow_share=params.shadow_share)
    answering = Answering(setup, batcher, admission, metrics)
    if params.shadow == "candidate":
        holder.follow_shadow = True
        # the shadow's answers go to the prediction log, or to a log of their own without one
        answering.shadow_log = answering.log or PredictionLog(setup.serving_dir / SHADOW_LOG)
        answering.shadow_model = lambda: holder.shadow
        batcher.on_shadow = answering.log_shadow

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        workers = [asyncio.create_task(batcher.run()), asyncio.create_task(holder.watch(params.reload_seconds))]
        yield
        for worker in workers:
            worker.cancel()
        batcher.close()
        answering.close()

    app = FastAPI(title="catdog", description="cat or dog, from the registry's production model", lifespan=lifespan)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded):
        metrics.overloaded.inc()
        return JSONResponse({"detail": error.reason}, status_code=503, headers={"Retry-After": str(error.retry_after)})

    tokens = setup.tokens

    @app.middleware("http")
    async def guard_and_count(request: Request, call_next):
        path = request.url.path
        endpoint = path if path in ENDPOINTS else next((p for p in ("/label", "/v2") if path.startswith(p)), "other")
        request.state.who = _token_name(request, tokens) if tokens else "local"
        if tokens and path not in PROBES and request.state.who is None:
            response = JSONResponse({"detail": f"missing or wrong token: send 'Authorization: Bearer <token>' "
                                               f"(the server's {TOKEN_VARIABLE})"}, status_code=401)
        else:
            response = await call_next(request)
        metrics.requests.labels(endpoint=endpoint, outcome=outcome_of(response)).inc()
        return response

    @app.get("/healthz")
    async def healthz():
        if holder.current is None:
            return JSONResponse({"status": "not ready", "reason": holder.problem}, status_code=503)
        return {"status": "ready", "model_version": holder.current.version}

    @app.get("/models")
    async def models():
        cards = await asyncio.to_thread(registry.cards)
        return {"serving": holder.current.version if holder.current else None,
                "following": params.model, "shadow": holder.shadow.version if holder.shadow else None,
                "models": [{"version": c["version"], "status": c["status"], "accuracy": c["metrics"]["accuracy"],
                            "created": c["created"]} for c in cards]}

    @app.get("/metrics")
    async def prometheus():
        metrics.inflight.set(admission.bytes_in_flight)
        metrics.shadow_dropped.set(batcher.shadow_dropped)
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text()

    @app.post("/predict")
    async def predict(request: Request, explain: bool = False):
        started = time.perf_counter()
        served = holder.current  # this request is answered by this model, whatever happens meanwhile
        if served is None:
            return JSONResponse({"detail": f"no model loaded yet: {holder.problem}"}, status_code=503)
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
        return JSONResponse({"model_version": served.version, "results": results},
                            status_code=200 if good == len(results) else 422)

    from catdog.v2_routes import v2_router

    app.include_router(v2_router(setup, holder, answering, admission))
    if setup.labels is not None:
        from catdog.label_routes import label_router

        app.include_router(label_router(setup.labels, holder, batcher, setup.max_pixels))
    return app


async def _uploads(request: Request, params: ServeParams, body_limit: int) -> list:
    """The request's files, parsed as the body streams in (files past 1 MB are spooled to disk)."""
    try:
        form = await Request(request.scope, _limited(request.receive, body_limit)).form(
            max_files=params.max_files, max_fields=params.max_files)
    except _TooLarge:
        raise HTTPException(413, _too_large_message(params)) from None
    uploads = [value for _, value in form.multi_items() if not isinstance(value, str)]
    if not uploads:
        raise HTTPException(400, "no files: send one or more images as multipart form fields named 'files'")
    for upload in uploads:
        if upload.size is not None and upload.size > params.max_upload_bytes:
            raise HTTPException(413, f"{upload.filename}: {upload.size:,} bytes is over the limit of "
                                     f"{params.max_upload_bytes:,} (serve.max_upload_bytes)")
    return uploads


async def _read_in_turn(uploads) -> AsyncIterator[tuple[str, bytes]]:
    for upload in uploads:
        data = await upload.read()
        await upload.close()
        yield upload.filename, data


def _too_large_message(params: ServeParams) -> str:
    return (f"request too large: at most {params.max_files} files of {params.max_upload_bytes:,} bytes each "
            "(serve.max_files, serve.max_upload_bytes)")


def _token_name(request, tokens: dict[str, str]) -> str | None:
    """The name of the token the request offers, or None when it offers no right one."""
    offered = request.headers.get("authorization", "")
    offered = offered[7:] if offered.lower().startswith("bearer ") else ""
    if not offered and request.url.path in PAGES:  # a browser opening a page: /?token=...
        offered = request.query_params.get("token", "")
    matches = [name for secret, name in tokens.items() if hmac.compare_digest(offered.encode(), secret.encode())]
    return matches[0] if matches else None


# ---------------------------------------------------------------- entry point


def run(setup: ServeSetup) -> None:
    """Serve until interrupted. Refuses a non-loopback address without a token."""
    import uvicorn

    params = setup.params
    check_binding(params.host, setup.token)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    app = create_app(setup)
    print(f"catdog serve: http://{params.host}:{params.port}/ (model: {params.model}, batches of up to "
          f"{params.max_batch_size}, waiting {params.max_wait_ms} ms){'; token required' if setup.token else ''}"
          f"{f'; logging to {setup.serving_dir}' if params.log_predictions else ''}", flush=True)
    uvicorn.run(app, host=params.host, port=params.port, log_level="warning", access_log=False)
