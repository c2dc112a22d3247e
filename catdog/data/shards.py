"""uint8 image shards on disk: written by preprocess and testset, read batch by batch by train and
evaluate.

Each split folder holds `images-00000.npy` ... (N, size, size) uint8 and `index.csv` (INDEX_COLUMNS:
path, label, sha256, shard, offset); `layout` places images into shards (catdog.data.conversion
writes them). Reads use positioned file reads, not mmap, so a reader's memory stays flat however
large the data set is.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
INDEX_COLUMNS = ["path", "label", "sha256", "shard", "offset"]


def layout(images: pd.DataFrame, shard_size: int, by: str | None = None) -> pd.DataFrame:
    """`images` with each one's shard and offset: in their order, `shard_size` a shard (within each
    value of column `by`, when given: preprocess's splits)."""
    position = images.groupby(by).cumcount().to_numpy() if by else np.arange(len(images))
    return images.assign(shard=position // shard_size, offset=position % shard_size)


def write_index(rows: pd.DataFrame, split_dir: Path) -> None:
    rows[INDEX_COLUMNS].to_csv(split_dir / "index.csv", index=False)


def shard_name(number: int) -> str:
    return f"images-{number:05d}.npy"


class ShardWriter:
    """One shard written image by image, byte for byte what `np.save` of the stacked images writes,
    without holding them all in memory. Appears under its name only once complete."""

    def __init__(self, path: Path, count: int, side: int):
        self.path, self._tmp = path, path.with_name(path.name + ".partial")
        self.file = open(self._tmp, "wb", buffering=0)  # unbuffered: callers may also append through its fd
        np.lib.format.write_array_header_1_0(
            self.file, {"descr": "|u1", "fortran_order": False, "shape": (count, side, side)}
        )
        self._end = self.file.tell() + count * side * side
        self._side = side

    def write(self, image: np.ndarray) -> None:
        if image.shape != (self._side, self._side):
            raise ValueError(f"{self.path.name}: image of shape {image.shape}, expected {(self._side, self._side)}")
        self.file.write(np.ascontiguousarray(image, np.uint8).data)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, *_) -> None:
        complete = kind is None and self.file.tell() == self._end
        self.file.close()
        if complete:
            os.replace(self._tmp, self.path)
            return
        self._tmp.unlink(missing_ok=True)
        if kind is None:
            raise RuntimeError(f"{self.path.name}: closed before all its images were written")


class ShardReader:
    """Random access to the images of one split, one image = one positioned read."""

    def __init__(self, split_dir: Path):
        self.dir = Path(split_dir)
        self.index = pd.read_csv(self.dir / "index.csv")
        self.labels = (self.index["label"] == "dog").to_numpy(np.float32)
        self._files: dict[int, tuple[int, int, tuple[int, ...]]] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _open(self, shard: int) -> tuple[int, int, tuple[int, ...]]:
        if shard not in self._files:
            path = self.dir / shard_name(shard)
            array = np.load(path, mmap_mode="r")  # only to learn the header's length and shape
            offset, shape = array.offset, array.shape
            del array
            self._files[shard] = (os.open(path, os.O_RDONLY), offset, shape)
        return self._files[shard]

    def images(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), size, size, 1) uint8 for the given row numbers."""
        shards = self.index["shard"].to_numpy()[rows]
        offsets = self.index["offset"].to_numpy()[rows]
        out = None
        for i, (shard, offset) in enumerate(zip(shards, offsets)):
            fd, header, shape = self._open(int(shard))
            side = shape[1]
            if out is None:
                out = np.empty((len(rows), side, side, 1), np.uint8)
            size = side * side
            out[i, :, :, 0] = np.frombuffer(os.pread(fd, size, header + int(offset) * size), np.uint8).reshape(
                side, side
            )
        return out if out is not None else np.empty((0, 0, 0, 1), np.uint8)

    def close(self) -> None:
        for fd, _, _ in self._files.values():
            os.close(fd)
        self._files.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
