"""Stage 5 of 8, preprocess: accepted images -> 256x256 grayscale uint8 shards, split by content.

Reads  data/validated/accepted.csv, data/ingested/ (the images), data/testset/test/index.csv.
Writes data/preprocessed/{train,val,test}/ (uint8 shards, index.csv) and meta.json; keeps converted
       images in data/cache/preprocess-arrays/.

The split of an image is a function of its sha256 alone, so the same picture always lands in
the same split (identical copies can never straddle train and test) and adding images never
moves the old ones. Training then never decodes a JPEG again.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from catdog.core.config import Params, PreprocessParams
from catdog.core.entry import stage_main
from catdog.core.errors import CatdogError
from catdog.core.files import atomic_dir, write_json
from catdog.core.parallel import process_map
from catdog.core.paths import ProjectPaths
from catdog.data import conversion, reuse, shards
from catdog.data.conversion import ShardJob
from catdog.data.shards import SPLITS


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


def plan(
    params: PreprocessParams, validated: Path, held_out: set[str] = frozenset()
) -> tuple[pd.DataFrame, list[ShardJob], int]:
    """Every accepted image with its split, shard and offset, the shards to write, and how many
    accepted images were left out because their content is in `held_out` (the curated test set)."""
    accepted = pd.read_csv(validated / "accepted.csv", dtype={"path": str, "sha256": str})
    in_test_set = accepted["sha256"].isin(held_out)
    accepted = accepted[~in_test_set]
    accepted["split"] = [split_of(h, params.val_fraction, params.test_fraction) for h in accepted["sha256"].tolist()]
    accepted = accepted.sort_values(["split", "sha256"], ignore_index=True)
    accepted = shards.layout(accepted, params.shard_size, by="split")
    return accepted, conversion.jobs(accepted), int(in_test_set.sum())


def array_cache(params: PreprocessParams, cache_dir: Path) -> reuse.ArrayCache:
    key = reuse.namespace(params.image_size, params.resize)
    return reuse.ArrayCache(cache_dir / "preprocess-arrays", key, params.image_size)


def finish(accepted: pd.DataFrame, params: PreprocessParams, folder: Path, held_out: int = 0) -> dict[str, int]:
    """The index of every split and meta.json, once all shards are in `folder`; `held_out` images
    were left out for the curated test set."""
    counts = {}
    for split in SPLITS:
        rows = accepted[accepted["split"] == split]
        (folder / split).mkdir(exist_ok=True)
        shards.write_index(rows, folder / split)
        counts[split] = len(rows)
    empty = [split for split in ("train", "test") if counts[split] == 0]
    if empty:
        raise CatdogError(
            f"the split left no {empty[0]} images ({counts}); ingest more images or change preprocess.test_fraction"
        )
    meta = {"image_size": params.image_size, "resize": params.resize, "counts": counts}
    write_json(folder / "meta.json", {**meta, "held_out_for_test_source": held_out} if held_out else meta)
    if held_out:
        print(
            f"preprocess: {held_out} accepted images are also in the curated test set (evaluate.test_source): "
            "left out of train, val and test"
        )
    return counts


def run(
    params: PreprocessParams,
    validated: Path,
    ingested: Path,
    out_dir: Path,
    progress: bool = True,
    cache_dir: Path | None = None,
    held_out: set[str] = frozenset(),
    *,
    max_pixels: int,
) -> PreprocessResult:
    """Convert every accepted image; with `cache_dir`, images converted in an earlier run (same content,
    size, resize and image code) are read back instead, and the cache keeps this run's images only."""
    from tqdm import tqdm

    accepted, jobs, held = plan(params, validated, held_out)
    cache = array_cache(params, cache_dir) if cache_dir else None
    cached = set(accepted["sha256"]) & cache.held() if cache else set()
    todo = [job.to_convert(cached) for job in jobs]
    converted = sum(map(len, todo))
    convert = partial(
        conversion.convert_image, root=ingested, size=params.image_size, resize=params.resize, max_pixels=max_pixels
    )
    workers = min(params.workers, max(1, converted // 128))

    def write(job: ShardJob, paths: list[str]) -> None:
        conversion.write_shard(job, params, tmp, cache, cached, convert_all(paths), convert, bar.update)

    # One process pool converts for every shard, which keeps both cores busy to the end; shards are
    # written two at a time, since copying the cached images is the kernel's work (the GIL is let go).
    with (
        process_map(convert, workers) as convert_all,
        atomic_dir(out_dir) as tmp,
        tqdm(total=len(accepted), desc="preprocess", unit="img", disable=not progress) as bar,
        ThreadPoolExecutor(2) as threads,
    ):
        list(threads.map(write, jobs, todo))
        counts = finish(accepted, params, tmp, held_out=held)
    print(f"preprocess: {counts} at {params.image_size}x{params.image_size} ({params.resize}) -> {out_dir}")
    if cache:
        cache.prune(set(accepted["sha256"]))
        print(f"preprocess: {reuse.report(cache_dir, 'preprocess', len(accepted) - converted, converted)}")
    return PreprocessResult(counts)


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> PreprocessResult:
    return run(
        params.preprocess,
        paths.validated,
        paths.ingested,
        paths.preprocessed,
        progress=progress,
        cache_dir=paths.cache,
        held_out=hashes(paths.testset),
        max_pixels=params.validate.max_pixels,
    )


def hashes(testset: Path) -> set[str]:
    """Content hashes of the curated test images (empty without a test set)."""
    index = testset / "test" / "index.csv"
    return set(pd.read_csv(index, dtype={"sha256": str})["sha256"]) if index.exists() else set()


if __name__ == "__main__":
    sys.exit(stage_main("preprocess", stage))
