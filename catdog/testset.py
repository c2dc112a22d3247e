"""Stage testset: the team's fixed, curated test set (`evaluate.test_source`), never trained on.

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
from pathlib import Path

import pandas as pd

from catdog import ingest, preprocess, validate
from catdog.config import Params
from catdog.errors import CatdogError
from catdog.files import atomic_dir, write_json

INDEX_COLUMNS = ["path", "label", "sha256", "shard", "offset"]
SHARD_SIZE = 512


def run(params: Params, test_source: Path | None, snapshot: pd.DataFrame | None, out_dir: Path,
        progress: bool = True) -> dict:
    with atomic_dir(out_dir) as tmp:
        (tmp / "test").mkdir()
        if test_source is None:
            pd.DataFrame(columns=INDEX_COLUMNS).to_csv(tmp / "test" / "index.csv", index=False)
            meta = {"source": None, "images": 0}
        else:
            meta = _build(params, test_source, snapshot, tmp, progress)
        write_json(tmp / "meta.json", meta)
    if meta["source"]:
        print(f"testset: {meta['images']} images ({meta['cat']} cat, {meta['dog']} dog) from {meta['source']}, "
              f"{meta['rejected']} rejected")
    else:
        print("testset: no evaluate.test_source: the gate judges on the test split")
    return meta


def _build(params: Params, test_source: Path, snapshot: pd.DataFrame | None, folder: Path, progress: bool) -> dict:
    try:
        ingest.run(dataclasses.replace(params.ingest, max_per_class=None), folder / "ingested", test_source,
                   progress=progress, snapshot=snapshot)
        result = validate.run(params.validate, folder / "ingested", folder / "validated", folder / "validate.json",
                              progress=progress)
    except CatdogError as error:
        raise CatdogError(f"evaluate.test_source {test_source}: {error}") from None
    accepted = result.accepted.sort_values("sha256", ignore_index=True)
    position = accepted.index.to_numpy()
    index = accepted.assign(shard=position // SHARD_SIZE, offset=position % SHARD_SIZE)[INDEX_COLUMNS]
    for number, rows in index.groupby("shard"):
        job = preprocess.ShardJob("test", int(number), tuple(rows["path"]), tuple(rows["sha256"]))
        preprocess.convert_shard(job, params.preprocess, folder / "ingested", folder)
    index.to_csv(folder / "test" / "index.csv", index=False)
    counts = accepted["label"].value_counts()
    return {"source": str(test_source), "images": len(index), "cat": int(counts.get("cat", 0)),
            "dog": int(counts.get("dog", 0)), "rejected": int(result.counts["rejected"]),
            "image_size": params.preprocess.image_size, "resize": params.preprocess.resize}


def hashes(out_dir: Path) -> set[str]:
    """Content hashes of the curated test images (empty without a test set)."""
    index = out_dir / "test" / "index.csv"
    return set(pd.read_csv(index, dtype={"sha256": str})["sha256"]) if index.exists() else set()

