"""Stage 4, train: fit the spec CNN on the preprocessed shards with Adam.

Reads  data/preprocessed/ (train and val shards, meta.json).
Writes data/model/ (model.keras, training.json), data/metrics/train_history.csv; checkpoints
       in data/checkpoints/ (a killed run resumes from them).

Resumable: after every epoch the whole model (weights and Adam state) is saved atomically
into a folder keyed by the train params and the data fingerprint, so a killed run resumes
from its last completed epoch and a changed run never picks up a stale checkpoint. (Keras'
BackupAndRestore writes its file in place: a kill mid-write leaves a file it cannot read.)
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

from catdog.core.config import Params, TrainParams
from catdog.core.entry import stage_main
from catdog.core.files import write_json
from catdog.core.paths import ProjectPaths
from catdog.data.shards import ShardReader
from catdog.model.batches import ShardBatches, augmentation
from catdog.model.callbacks import (
    HISTORY_COLUMNS,
    DecayToZero,
    EpochCheckpoint,
    HistoryLog,
    InputWait,
    Throughput,
    TimeBudget,
    optional_callbacks,
    restore_best_epoch,
)
from catdog.model.network import build_model, carry_weights, load_model
from catdog.model.precision import gpu_with_bf16
from catdog.model.precision import resolve as resolve_precision


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    best_epoch: int
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


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights (n / (2 * n_class)): each class counts as much in the loss."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: float(len(labels) / (2 * counts[c])) if counts[c] else 1.0 for c in (0, 1)}


@dataclass(frozen=True)
class Phase:
    """Epochs [first_epoch, last_epoch) (Keras' initial_epoch and epochs) at one image size."""

    image_size: int
    first_epoch: int
    last_epoch: int
    learning_rate: float


def phases(params: TrainParams, image_size: int) -> list[Phase]:
    """Progressive resizing: the warm-up sizes first, then `epochs` at the full size."""
    warmup_rate = params.warmup_learning_rate or params.learning_rate
    plan, first = [], 0
    for size, epochs, rate in [
        *zip(params.warmup_sizes, params.warmup_epochs, [warmup_rate] * len(params.warmup_sizes)),
        (image_size, params.epochs, params.learning_rate),
    ]:
        plan.append(Phase(size, first, first + epochs, rate))
        first += epochs
    return plan


def distribution_strategy(name: str):
    """The tf.distribute strategy for `train.distribute`; call before TensorFlow touches a device.

    `mirrored` replicates the model on every local GPU, or on two logical CPU devices when
    there is no GPU (the same code path, testable anywhere). `multi_worker` reads the
    cluster from the TF_CONFIG environment variable (see README).
    """
    import tensorflow as tf

    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class TrainingRun:
    """One run's setup, fixed before its first epoch."""

    params: TrainParams
    plan: list[Phase]
    precision: str
    strategy: object  # tf.distribute.Strategy
    train: ShardReader
    val: ShardReader
    run_dir: Path  # its epoch checkpoints and history
    resumed: int  # the last epoch a killed run completed (0: a new run)

    @property
    def image_size(self) -> int:
        return self.plan[-1].image_size


@dataclass
class Fitted:
    """What the epochs produced: the model, and what watched it at full size."""

    model: keras.Model
    throughput: Throughput
    final_callbacks: list
    input_wait: dict[int, float]
    seconds: float = 0.0


def run(params: TrainParams, preprocessed: Path, model_dir: Path, checkpoints: Path, metrics_dir: Path) -> TrainResult:
    strategy = distribution_strategy(params.distribute)
    precision, why = resolve_precision(params.precision, gpu=gpu_with_bf16())
    print(f"train: precision {precision} ({why})")
    image_size = json.loads((preprocessed / "meta.json").read_text())["image_size"]
    keras.utils.set_random_seed(params.seed)
    fingerprint = data_fingerprint(preprocessed)
    plan, run_dir = phases(params, image_size), checkpoint_folder(params, fingerprint, checkpoints)
    with strategy.scope():
        model, resumed = start_or_resume(params, plan[0], precision, run_dir)
    setup = TrainingRun(
        params,
        plan,
        precision,
        strategy,
        ShardReader(preprocessed / "train"),
        ShardReader(preprocessed / "val"),
        run_dir,
        resumed,
    )
    _announce(setup, model)
    started = time.perf_counter()
    fitted = fit_phases(model, setup)
    fitted.seconds = time.perf_counter() - started
    restore_best_epoch(fitted.model, fitted.final_callbacks)
    result = save_model(
        fitted,
        setup,
        model_dir,
        metrics_dir,
        {"data_fingerprint": fingerprint, "precision": precision, "precision_reason": why},
    )
    print(
        f"train: done in {fitted.seconds:.0f} s ({result.images_per_second} img/s at full size) -> "
        f"{model_dir / 'model.keras'}"
    )
    return result


def _announce(setup: TrainingRun, model: keras.Model) -> None:
    params, size = setup.params, setup.image_size
    warmup = "".join(f", {p.last_epoch - p.first_epoch} warm-up epoch(s) at {p.image_size}" for p in setup.plan[:-1])
    print(
        f"train: {len(setup.train)} train / {len(setup.val)} val images at {size}x{size}, "
        f"{model.count_params():,} parameters at {model.input_shape[1]}, {params.epochs} epoch(s){warmup}, "
        f"batch {params.batch_size}, {setup.strategy.num_replicas_in_sync} replica(s)"
    )


def checkpoint_folder(params: TrainParams, fingerprint: str, checkpoints: Path) -> Path:
    """The folder of this run's epoch checkpoints, keyed by the params and the data; others are stale."""
    key = hashlib.sha256(
        json.dumps({"params": asdict(params), "data": fingerprint}, sort_keys=True).encode()
    ).hexdigest()[:16]
    run_dir = checkpoints / key
    for stale in checkpoints.glob("*") if checkpoints.exists() else []:
        if stale != run_dir:
            shutil.rmtree(stale, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def start_or_resume(params: TrainParams, first: Phase, precision: str, run_dir: Path) -> tuple[keras.Model, int]:
    """The model after the last completed epoch of a killed run, or a new one; and that epoch (0: new)."""
    resumed, checkpoint = EpochCheckpoint.latest(run_dir)
    history_file = run_dir / "history.csv"
    if history_file.exists():  # keep only the epochs the checkpoint has; later ones are redone
        _history(history_file).query("epoch <= @resumed").to_csv(history_file, index=False)
    if checkpoint:
        print(f"train: resuming after epoch {resumed} from {checkpoint}")
        return load_model(checkpoint), resumed
    return _build(params, first, precision), 0


def fit_phases(model: keras.Model, setup: TrainingRun) -> Fitted:
    """Each phase's epochs at its image size, the weights carried up between phases; with the
    full-size throughput, the callbacks that watched the full-size epochs, and the share of each
    size's step time spent waiting for data."""
    params, plan, train, val, run_dir, resumed = (
        setup.params,
        setup.plan,
        setup.train,
        setup.val,
        setup.run_dir,
        setup.resumed,
    )
    epoch_sizes = [p.image_size for p in plan for _ in range(p.first_epoch, p.last_epoch)]
    budget = TimeBudget(params.max_minutes, epoch_sizes, run_dir / "budget.json") if params.max_minutes else None
    augment = augmentation(params.seed, params.random_resized_crop) if params.augment else None
    steps_per_epoch = math.ceil(len(train) / params.batch_size)
    final_callbacks = optional_callbacks(params, has_validation=len(val) > 0)
    throughput = Throughput(params.batch_size)
    input_wait = {}
    for phase in plan:
        if resumed >= phase.last_epoch:
            continue
        if model.input_shape[1] != phase.image_size:
            with setup.strategy.scope():
                model = _grown(model, params, phase, setup.precision)
        if budget and (budget.exhausted or budget.warmup_over and phase is not plan[-1]):
            print(f"train: no time left for the epochs at {phase.image_size}; the weights are carried over")
            continue
        is_final = phase is plan[-1]
        batches = ShardBatches(
            train,
            params.batch_size,
            shuffle=True,
            seed=params.seed,
            start_epoch=max(phase.first_epoch, resumed),
            augment=augment,
            image_size=phase.image_size,
        )
        wait = InputWait(batches)
        model.fit(
            batches,
            validation_data=ShardBatches(val, params.batch_size, shuffle=False, image_size=phase.image_size)
            if len(val)
            else None,
            epochs=phase.last_epoch,
            initial_epoch=max(phase.first_epoch, resumed),
            class_weight=class_weights(train.labels) if params.class_weight == "balanced" else None,
            callbacks=[
                wait,
                HistoryLog(run_dir / "history.csv", phase.image_size),
                EpochCheckpoint(run_dir),
                *([throughput] if is_final else []),
                *([budget] if budget else []),
                *(
                    [
                        DecayToZero(
                            params.lr_schedule,
                            phase.learning_rate,
                            steps_per_epoch,
                            len(epoch_sizes) * steps_per_epoch,
                            budget,
                        )
                    ]
                    if params.lr_schedule != "constant"
                    else []
                ),
                *(final_callbacks if is_final else []),
            ],
            verbose=1 if sys.stdout.isatty() else 2,
        )
        input_wait[phase.image_size] = round(wait.share, 4)
        print(f"train: at {phase.image_size} px the steps waited for data {wait.share:.1%} of their time")
    return Fitted(model, throughput, final_callbacks, input_wait)


def save_model(fitted: Fitted, setup: TrainingRun, model_dir: Path, metrics_dir: Path, facts: dict) -> TrainResult:
    """The model, its history and train.json, each written atomically; the checkpoints are then done with."""
    model, params, run_dir, image_size = fitted.model, setup.params, setup.run_dir, setup.image_size
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".model-{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, model_dir / "model.keras")
    history = _history(run_dir / "history.csv")
    metrics_dir.mkdir(parents=True, exist_ok=True)
    history.to_csv(metrics_dir / "train_history.csv", index=False)
    full_size = history[history["image_size"] == image_size]
    best = (
        full_size.loc[full_size["val_loss"].idxmin(), "epoch"] if full_size["val_loss"].notna().any() else len(history)
    )
    result = TrainResult(
        epochs=len(history),
        best_epoch=int(best) if params.early_stopping_patience else len(history),
        seconds=round(fitted.seconds, 1),
        images_per_second=fitted.throughput.images_per_second,
        parameters=int(model.count_params()),
        resumed_from_epoch=setup.resumed,
    )
    write_json(
        model_dir / "train.json",
        {**asdict(result), "image_size": image_size, **facts, "input_wait_share": fitted.input_wait},
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _build(params: TrainParams, phase: Phase, precision: str) -> keras.Model:
    return build_model(
        phase.image_size,
        phase.learning_rate,
        params.dropout,
        params.flatten_dense_lr_scale,
        params.center_inputs,
        precision,
        params.label_smoothing,
        params.ema_momentum,
    )


def _grown(model: keras.Model, params: TrainParams, phase: Phase, precision: str) -> keras.Model:
    """The same weights in the model for the phase's larger input, with a fresh Adam at its rate."""
    grown = _build(params, phase, precision)
    carry_weights(model, grown)
    print(f"train: carried the weights from {model.input_shape[1]} to {phase.image_size} pixels")
    return grown


def _history(history_file: Path) -> pd.DataFrame:
    """Per-epoch log, epochs counted from 1; an epoch that was redone after a kill appears once."""
    history = pd.read_csv(history_file)
    history = history.drop_duplicates("epoch", keep="last")
    return history.reindex(columns=HISTORY_COLUMNS)


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> TrainResult:
    return run(params.train, paths.preprocessed, paths.model_dir, paths.checkpoints, paths.metrics)


if __name__ == "__main__":
    sys.exit(stage_main("train", stage))
