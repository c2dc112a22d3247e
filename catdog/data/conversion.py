"""Photos converted into shards, one shard a unit of work (preprocess, its Prefect fan-out, testset):
each image through the one conversion train, predict and serve share (catdog.data.images)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from catdog.core.config import PreprocessParams
from catdog.core.errors import CatdogError
from catdog.data import reuse
from catdog.data.images import ImageError, load_model_input
from catdog.data.shards import ShardWriter, shard_name


def jobs(index: pd.DataFrame, split: str | None = None) -> list[ShardJob]:
    """The shards to write for a laid-out index (one split, or each row's `split`)."""
    keys = ["shard"] if split else ["split", "shard"]
    return [
        ShardJob(split or key[0], int(key[-1]), tuple(rows["path"].tolist()), tuple(rows["sha256"].tolist()))
        for key, rows in index.groupby(keys, sort=True)
    ]


def convert_image(path: str, root: Path, size: int, resize: str, max_pixels: int) -> np.ndarray:
    try:
        return load_model_input(root / path, size, resize, max_pixels=max_pixels)
    except (ImageError, OSError) as error:
        raise CatdogError(
            f"{path}: {error}; it passed validation, so it changed since: run `dvc repro` to ingest and validate again"
        ) from None


@dataclass(frozen=True)
class ShardJob:
    """One shard's worth of work: convert these images into `<split>/images-NNNNN.npy`."""

    split: str
    number: int
    paths: tuple[str, ...]
    sha256s: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.split}/{shard_name(self.number)}"

    def to_convert(self, cached: set[str]) -> list[str]:
        """The paths of the images whose content is not in `cached`, in shard order."""
        return [path for path, sha in zip(self.paths, self.sha256s) if sha not in cached]


def write_shard(
    job: ShardJob,
    params: PreprocessParams,
    folder: Path,
    cache: reuse.ArrayCache | None,
    cached: set[str],
    converted: Iterator[np.ndarray],
    convert,
    on_image=lambda: None,
) -> None:
    """Write the job's shard into `folder`, its images in order: copied from `cache` when in `cached`,
    else the next of `converted` (which then goes into the cache)."""
    (folder / job.split).mkdir(parents=True, exist_ok=True)
    with ShardWriter(folder / job.name, len(job.paths), params.image_size) as shard:
        for path, sha in zip(job.paths, job.sha256s):
            if sha not in cached:
                image = next(converted)
                if cache:
                    cache.put(sha, image)
                shard.write(image)
            elif not cache.copy_to(sha, shard.file):  # pruned meanwhile by a concurrent run
                shard.write(convert(path))
            on_image()


def convert_shard(
    job: ShardJob,
    params: PreprocessParams,
    ingested: Path,
    folder: Path,
    cache: reuse.ArrayCache | None = None,
    *,
    max_pixels: int,
) -> int:
    """Write one shard into `folder` (a fan-out task's unit of work); returns how many images it
    converted (the others came from `cache`)."""
    convert = partial(convert_image, root=ingested, size=params.image_size, resize=params.resize, max_pixels=max_pixels)
    cached = set(job.sha256s) & cache.held() if cache else set()
    todo = job.to_convert(cached)
    write_shard(job, params, folder, cache, cached, map(convert, todo), convert)
    return len(todo)
