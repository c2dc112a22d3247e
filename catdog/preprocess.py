"""Stage 3, preprocess: accepted images -> 256x256 grayscale uint8 shards, split by content.

The split of an image is a function of its sha256 alone, so the same picture always lands in
the same split (identical copies can never straddle train and test) and adding images never
moves the old ones. Training then never decodes a JPEG again.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from catdog import reuse
from catdog.config import PreprocessParams
from catdog.errors import CatdogError
from catdog.files import atomic_dir, write_json
from catdog.images import ImageError, load_model_input
from catdog.parallel import process_map
from catdog.shards import SPLITS, ShardWriter, shard_name


@dataclass(frozen=True)
class PreprocessResult:
    counts: dict[str, int]


def split_of(sha256: str, val_fraction: float, test_fraction: float) -> str:
    """'train', 'val' or 'test' from the content hash: uniform, deterministic, seed-free."""
    position = int(sha256[:12], 16) / 16**12
    if position < test_fraction:
        return "test"
    if position < test_fraction + val_fraction:
        return "val"
    return "train"


def _convert(path: str, root: Path, size: int, resize: str) -> np.ndarray:
    try:
        return load_model_input(root / path, size, resize)
    except (ImageError, OSError) as error:
        raise CatdogError(f"{path}: {error}; it passed validation, so it changed since: "
                          "run `dvc repro` to ingest and validate again") from None


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


def plan(params: PreprocessParams, validated: Path, held_out: set[str] = frozenset()
         ) -> tuple[pd.DataFrame, list[ShardJob], int]:
    """Every accepted image with its split, shard and offset, the shards to write, and how many
    accepted images were left out because their content is in `held_out` (the curated test set)."""
    accepted = pd.read_csv(validated / "accepted.csv", dtype={"path": str, "sha256": str})
    in_test_set = accepted["sha256"].isin(held_out)
    accepted = accepted[~in_test_set]
    accepted["split"] = [split_of(h, params.val_fraction, params.test_fraction) for h in accepted["sha256"].tolist()]
    accepted = accepted.sort_values(["split", "sha256"], ignore_index=True)
    position = accepted.groupby("split").cumcount().to_numpy()
    accepted["shard"], accepted["offset"] = position // params.shard_size, position % params.shard_size
    jobs = [ShardJob(split, int(number), tuple(rows["path"].tolist()), tuple(rows["sha256"].tolist()))
            for (split, number), rows in accepted.groupby(["split", "shard"], sort=True)]
    return accepted, jobs, int(in_test_set.sum())


def array_cache(params: PreprocessParams, cache_dir: Path) -> reuse.ArrayCache:
    key = reuse.namespace(params.image_size, params.resize)
    return reuse.ArrayCache(cache_dir / "preprocess-arrays", key, params.image_size)


def write_shard(job: ShardJob, params: PreprocessParams, folder: Path, cache: reuse.ArrayCache | None,
                cached: set[str], converted: Iterator[np.ndarray], convert, on_image=lambda: None) -> None:
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


def convert_shard(job: ShardJob, params: PreprocessParams, ingested: Path, folder: Path,
                  cache: reuse.ArrayCache | None = None) -> int:
    """Write one shard into `folder` (a fan-out task's unit of work); returns how many images it
    converted (the others came from `cache`)."""
    convert = partial(_convert, root=ingested, size=params.image_size, resize=params.resize)
    cached = set(job.sha256s) & cache.held() if cache else set()
    todo = job.to_convert(cached)
    write_shard(job, params, folder, cache, cached, map(convert, todo), convert)
    return len(todo)


def finish(accepted: pd.DataFrame, params: PreprocessParams, folder: Path, held_out: int = 0) -> dict[str, int]:
    """The index of every split and meta.json, once all shards are in `folder`; `held_out` images
    were left out for the curated test set."""
    counts = {}
    for split in SPLITS:
        rows = accepted[accepted["split"] == split]
        (folder / split).mkdir(exist_ok=True)
        rows[["path", "label", "sha256", "shard", "offset"]].to_csv(folder / split / "index.csv", index=False)
        counts[split] = len(rows)
    empty = [split for split in ("train", "test") if counts[split] == 0]
    if empty:
        raise CatdogError(f"the split left no {empty[0]} images ({counts}); "
                          "ingest more images or change preprocess.test_fraction")
    meta = {"image_size": params.image_size, "resize": params.resize, "counts": counts}
    write_json(folder / "meta.json", {**meta, "held_out_for_test_source": held_out} if held_out else meta)
    if held_out:
        print(f"preprocess: {held_out} accepted images are also in the curated test set (evaluate.test_source): "
              "left out of train, val and test")
    return counts


def run(params: PreprocessParams, validated: Path, ingested: Path, out_dir: Path, progress: bool = True,
        cache_dir: Path | None = None, held_out: set[str] = frozenset()) -> PreprocessResult:
    """Convert every accepted image; with `cache_dir`, images converted in an earlier run (same content,
    size, resize and image code) are read back instead, and the cache keeps this run's images only."""
    from tqdm import tqdm

    accepted, jobs, held = plan(params, validated, held_out)
    cache = array_cache(params, cache_dir) if cache_dir else None
    cached = set(accepted["sha256"]) & cache.held() if cache else set()
    todo = [job.to_convert(cached) for job in jobs]
    converted = sum(map(len, todo))
    convert = partial(_convert, root=ingested, size=params.image_size, resize=params.resize)
    workers = min(params.workers, max(1, converted // 128))

    def write(job: ShardJob, paths: list[str]) -> None:
        write_shard(job, params, tmp, cache, cached, convert_all(paths), convert, bar.update)

    # One process pool converts for every shard, which keeps both cores busy to the end; shards are
    # written two at a time, since copying the cached images is the kernel's work (the GIL is let go).
    with process_map(convert, workers) as convert_all, atomic_dir(out_dir) as tmp, \
            tqdm(total=len(accepted), desc="preprocess", unit="img", disable=not progress) as bar, \
            ThreadPoolExecutor(2) as threads:
        list(threads.map(write, jobs, todo))
        counts = finish(accepted, params, tmp, held_out=held)
    print(f"preprocess: {counts} at {params.image_size}x{params.image_size} ({params.resize}) -> {out_dir}")
    if cache:
        cache.prune(set(accepted["sha256"]))
        print(f"preprocess: {reuse.report(cache_dir, 'preprocess', len(accepted) - converted, converted)}")
    return PreprocessResult(counts)
