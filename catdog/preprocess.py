"""Stage 3, preprocess: accepted images -> 256x256 grayscale uint8 shards, split by content.

The split of an image is a function of its sha256 alone, so the same picture always lands in
the same split (identical copies can never straddle train and test) and adding images never
moves the old ones. Training then never decodes a JPEG again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from catdog.config import PreprocessParams
from catdog.errors import CatdogError
from catdog.files import atomic_dir, write_json
from catdog.images import load_model_input
from catdog.parallel import process_map
from catdog.shards import SPLITS, shard_name, write_shard


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
    return load_model_input(root / path, size, resize)


def run(params: PreprocessParams, validated: Path, ingested: Path, out_dir: Path, progress: bool = True) -> PreprocessResult:
    from tqdm import tqdm

    accepted = pd.read_csv(validated / "accepted.csv")
    accepted["split"] = [split_of(h, params.val_fraction, params.test_fraction) for h in accepted["sha256"]]
    accepted = accepted.sort_values(["split", "sha256"], ignore_index=True)
    convert = partial(_convert, root=ingested, size=params.image_size, resize=params.resize)
    workers = min(params.workers, max(1, len(accepted) // 128))
    counts = {}
    with process_map(convert, workers) as convert_all, atomic_dir(out_dir) as tmp, \
            tqdm(total=len(accepted), desc="preprocess", unit="img", disable=not progress) as bar:
        for split in SPLITS:
            rows = accepted[accepted["split"] == split].reset_index(drop=True)
            (tmp / split).mkdir()
            buffer = []
            for number, image in enumerate(convert_all(rows["path"])):
                buffer.append(image)
                if len(buffer) == params.shard_size or number == len(rows) - 1:
                    write_shard(tmp / split / shard_name(number // params.shard_size), np.stack(buffer))
                    buffer.clear()
                bar.update()
            rows["shard"] = np.arange(len(rows)) // params.shard_size
            rows["offset"] = np.arange(len(rows)) % params.shard_size
            rows[["path", "label", "sha256", "shard", "offset"]].to_csv(tmp / split / "index.csv", index=False)
            counts[split] = len(rows)
        empty = [split for split in ("train", "test") if counts[split] == 0]
        if empty:
            raise CatdogError(f"the split left no {empty[0]} images ({counts}); "
                              "ingest more images or change preprocess.test_fraction")
        write_json(tmp / "meta.json", {"image_size": params.image_size, "resize": params.resize, "counts": counts})
    print(f"preprocess: {counts} at {params.image_size}x{params.image_size} ({params.resize}) -> {out_dir}")
    return PreprocessResult(counts)
