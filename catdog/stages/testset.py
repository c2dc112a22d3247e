"""Stage 4 of 8, testset: the team's fixed, curated test set (`evaluate.test_source`), never trained on.

Reads  evaluate.test_source as data/source/test-manifest.csv listed it.
Writes data/testset/ (ingested/, validated/, test/ shards and index.csv, meta.json).

The split of today's photos moves as photos come and go, and 188 photos carry about +-3 points
of noise. A curated set stays the same from run to run, so the gate can compare models on it.
It is a folder or an archive like any source: the source stage lists it (so DVC sees it
change), and here it is ingested and validated as the training data is, then converted for
the model (preprocess's size and resize). Its photos leave the training data by content hash
(preprocess does that, and says how many). Without `evaluate.test_source` the stage writes an
empty set and everything works on the test split alone.

Output: data/testset/ingested/, validated/, test/ (uint8 shards + index.csv as preprocess
writes them, read with ShardReader) and meta.json.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd

from catdog.core.config import Params
from catdog.core.entry import stage_main
from catdog.core.errors import CatdogError
from catdog.core.files import atomic_dir, write_json
from catdog.core.paths import ProjectPaths
from catdog.data import conversion, intake, shards, validation
from catdog.data.sources import read_manifest


def run(
    params: Params, test_source: Path | None, snapshot: pd.DataFrame | None, out_dir: Path, progress: bool = True
) -> dict:
    with atomic_dir(out_dir) as tmp:
        (tmp / "test").mkdir()
        if test_source is None:
            shards.write_index(pd.DataFrame(columns=shards.INDEX_COLUMNS), tmp / "test")
            meta = {"source": None, "images": 0}
        else:
            meta = _build(params, test_source, snapshot, tmp, progress)
        write_json(tmp / "meta.json", meta)
    if meta["source"]:
        print(
            f"testset: {meta['images']} images ({meta['cat']} cat, {meta['dog']} dog) from {meta['source']}, "
            f"{meta['rejected']} rejected"
        )
    else:
        print("testset: no evaluate.test_source: the gate judges on the test split")
    return meta


def _build(params: Params, test_source: Path, snapshot: pd.DataFrame | None, folder: Path, progress: bool) -> dict:
    try:
        intake.ingest(
            dataclasses.replace(params.ingest, max_per_class=None),
            folder / "ingested",
            test_source,
            progress=progress,
            snapshot=snapshot,
        )
        result = validation.validate(
            params.validate, folder / "ingested", folder / "validated", folder / "validate.json", progress=progress
        )
    except CatdogError as error:
        raise CatdogError(f"evaluate.test_source {test_source}: {error}") from None
    accepted = result.accepted.sort_values("sha256", ignore_index=True)
    index = shards.layout(accepted, params.preprocess.shard_size)
    for job in conversion.jobs(index, split="test"):
        conversion.convert_shard(
            job, params.preprocess, folder / "ingested", folder, max_pixels=params.validate.max_pixels
        )
    shards.write_index(index, folder / "test")
    counts = accepted["label"].value_counts()
    return {
        "source": str(test_source),
        "images": len(index),
        "cat": int(counts.get("cat", 0)),
        "dog": int(counts.get("dog", 0)),
        "rejected": int(result.counts["rejected"]),
        "image_size": params.preprocess.image_size,
        "resize": params.preprocess.resize,
    }


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> dict:
    return run(
        params,
        params.test_source_path(paths.root),
        read_manifest(paths.test_source_manifest),
        paths.testset,
        progress=progress,
    )


if __name__ == "__main__":
    sys.exit(stage_main("testset", stage))
