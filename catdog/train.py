"""Stage 4, train: fit the spec CNN on the preprocessed shards with Adam.

Resumable: a checkpoint is written after every epoch (keras BackupAndRestore) into a folder
keyed by the train params and the data fingerprint, so a killed run resumes from its last
completed epoch and a changed run never picks up a stale checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from catdog.config import TrainParams
from catdog.files import write_json
from catdog.model import build_model
from catdog.shards import ShardReader

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    seconds: float
    images_per_second: float
    parameters: int
    resumed_from_epoch: int


def data_fingerprint(preprocessed: Path) -> str:
    """sha256 over the preprocessed data's description: same images, same splits, same size."""
    digest = hashlib.sha256()
    for name in ["meta.json", "train/index.csv", "val/index.csv", "test/index.csv"]:
        path = preprocessed / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


class ShardBatches(keras.utils.PyDataset):
    """(uint8 images, p(dog) labels) batches read from shards; reshuffled each epoch by seed."""

    def __init__(self, reader: ShardReader, batch_size: int, *, shuffle: bool, seed: int = 0):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
        self.reader, self.batch_size, self.shuffle, self.seed = reader, batch_size, shuffle, seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.reader))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.reader))

    def __len__(self) -> int:
        return math.ceil(len(self.reader) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.reader.images(rows), self.reader.labels[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


class Throughput(keras.callbacks.Callback):
    """Training images per second, counting train steps only (not validation)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size, self.seconds, self.batches = batch_size, 0.0, 0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds += time.perf_counter() - self._start
        self.batches += 1

    @property
    def images_per_second(self) -> float:
        return round(self.batches * self.batch_size / self.seconds, 2) if self.seconds else 0.0


def run(params: TrainParams, preprocessed: Path, model_dir: Path, checkpoints: Path, metrics_dir: Path) -> TrainResult:
    meta = json.loads((preprocessed / "meta.json").read_text())
    image_size = meta["image_size"]
    keras.utils.set_random_seed(params.seed)
    train = ShardReader(preprocessed / "train")
    val = ShardReader(preprocessed / "val")
    model = build_model(image_size, params.learning_rate, params.dropout)
    print(f"train: {len(train)} train / {len(val)} val images at {image_size}x{image_size}, "
          f"{model.count_params():,} parameters, {params.epochs} epoch(s), batch {params.batch_size}")

    key = hashlib.sha256(json.dumps({"params": asdict(params), "data": data_fingerprint(preprocessed)},
                                    sort_keys=True).encode()).hexdigest()[:16]
    run_dir = checkpoints / key
    for stale in checkpoints.glob("*") if checkpoints.exists() else []:
        if stale != run_dir:
            shutil.rmtree(stale, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    history_file = run_dir / "history.csv"
    resumed = _completed_epochs(history_file)
    if resumed:
        print(f"train: resuming after epoch {resumed} from {run_dir}")

    throughput = Throughput(params.batch_size)
    started = time.perf_counter()
    model.fit(
        ShardBatches(train, params.batch_size, shuffle=True, seed=params.seed),
        validation_data=ShardBatches(val, params.batch_size, shuffle=False) if len(val) else None,
        epochs=params.epochs,
        callbacks=[
            # History first: a kill between the two repeats an epoch, never loses one from the log.
            keras.callbacks.CSVLogger(str(history_file), append=True),
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
            throughput,
        ],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    seconds = time.perf_counter() - started

    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".model-{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, model_dir / "model.keras")
    history = _history(history_file)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    history.to_csv(metrics_dir / "train_history.csv", index=False)
    result = TrainResult(
        epochs=params.epochs,
        seconds=round(seconds, 1),
        images_per_second=throughput.images_per_second,
        parameters=int(model.count_params()),
        resumed_from_epoch=resumed,
    )
    write_json(model_dir / "train.json", {**asdict(result), "image_size": image_size,
                                          "data_fingerprint": data_fingerprint(preprocessed)})
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"train: done in {seconds:.0f} s ({result.images_per_second} img/s) -> {model_dir / 'model.keras'}")
    return result


def _completed_epochs(history_file: Path) -> int:
    return len(_history(history_file)) if history_file.exists() else 0


def _history(history_file: Path) -> pd.DataFrame:
    """Per-epoch log; a resumed run may repeat an epoch whose checkpoint was lost: keep the last."""
    history = pd.read_csv(history_file)
    history["epoch"] = history["epoch"].astype(int) + 1
    history = history.drop_duplicates("epoch", keep="last")
    return history.reindex(columns=HISTORY_COLUMNS)
