"""The model that answers: the registry's production version (or a fixed one), followed, warmed up
before a switch, and the shadow candidate beside it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from catdog.registry.store import PRODUCTION, Registry
from catdog.serving.predict import LoadedModel, load_for_prediction

log = logging.getLogger("catdog.serving")


class ModelHolder:
    """The model being served. With ref 'production' it follows the registry's production
    version; a fixed vNNNN never changes. Loads happen in a worker thread."""

    def __init__(
        self,
        registry: Registry,
        ref: str,
        on_change: Callable[[LoadedModel], None] = lambda m: None,
        warm_sizes: tuple[int, ...] = (1,),
    ):
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
                self.problem = (
                    "there is no production model yet: run `dvc repro` (or `make run`), or "
                    "`catdog models promote VERSION`; this server loads it as soon as there is one"
                )
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
    return tuple(
        sorted({2**i for i in range(max_batch_size.bit_length()) if 2**i <= max_batch_size} | {max_batch_size})
    )


def warm_up(loaded: LoadedModel, sizes: tuple[int, ...], rounds: int = 2) -> None:
    """Run a few batches of each size through a freshly loaded model, so that the first requests on
    it do not pay for TensorFlow's tracing (TF Serving's --enable_model_warmup answers the same)."""
    from catdog.model.network import predict_p_dog

    for size in sizes:
        batch = np.zeros((size, loaded.image_size, loaded.image_size, 1), np.uint8)
        for _ in range(rounds):
            predict_p_dog(loaded.model, [batch], loaded.flip_tta)
