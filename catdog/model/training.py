"""Training the spec CNN on preprocessed shards: the plan of phases (progressive resizing) cut to
the work budget, resumable epoch checkpoints, and the fit itself. The train stage and each trial
of a sweep (catdog/tuning/) train through this one module, so a sweep's winner trains the same
way in `dvc repro`.

The schedule is a pure function of the params and the number of training images: the same
params and data give the same steps on any host of the same precision. `train.budget_images`
counts work, not time; `train.max_minutes` is only a safety stop, and says so when it fires.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from catdog.core.config import ParamsError, TrainParams
from catdog.core.live import HISTORY_COLUMNS
from catdog.data.shards import ShardReader
from catdog.model.batches import ShardBatches, augmentation
from catdog.model.callbacks import (
    DecayToZero,
    EpochCheckpoint,
    HistoryLog,
    InputWait,
    Throughput,
    TimeBudget,
    optional_callbacks,
)
from catdog.model.network import build_model, carry_weights, load_model
from catdog.model.precision import gpu_with_bf16
from catdog.model.precision import resolve as resolve_precision


@dataclass(frozen=True)
class Phase:
    """Epochs [first_epoch, last_epoch) (Keras' initial_epoch and epochs) at one image size."""

    image_size: int
    first_epoch: int
    last_epoch: int
    learning_rate: float

    @property
    def epochs(self) -> int:
        return self.last_epoch - self.first_epoch


def phases(params: TrainParams, image_size: int, train_images: int | None = None) -> list[Phase]:
    """Progressive resizing: the warm-up sizes first, then `epochs` at the full size; with
    `train.budget_images` (and the number of training images), cut to that work budget."""
    warmup_rate = params.warmup_learning_rate or params.learning_rate
    epochs = [
        *zip(params.warmup_sizes, params.warmup_epochs, [warmup_rate] * len(params.warmup_sizes)),
        (image_size, params.epochs, params.learning_rate),
    ]
    if params.budget_images is not None and train_images is not None:
        epochs = _within_budget(epochs, params.budget_images, train_images, image_size)
    plan, first = [], 0
    for size, count, rate in epochs:
        plan.append(Phase(size, first, first + count, rate))
        first += count
    return plan


def image_cost(size: int, full_size: int) -> float:
    """What one image at `size` costs, counted in images at the full size (the pixels computed)."""
    return (size / full_size) ** 2


def _within_budget(epochs: list[tuple], budget: int, train_images: int, full: int) -> list[tuple]:
    """Each size's epochs in order while they fit in `budget` images at full-size cost; the warm-up
    keeps room for at least one epoch at the full size, so the model trains at the size it is used at."""
    full_epoch = train_images
    if budget < full_epoch:
        raise ParamsError(
            f"train.budget_images: {budget:,} is less than one epoch at the full size ({train_images:,} "
            f"training images at {full} px) (fix: raise it to at least {full_epoch:,}, or set it to null)"
        )
    left, cut = budget, []
    for size, count, rate in epochs[:-1]:
        epoch_cost = train_images * image_cost(size, full)
        fitting = min(count, math.floor((left - full_epoch) / epoch_cost + 1e-9))
        cut.append((size, fitting, rate))
        left -= fitting * epoch_cost
    size, count, rate = epochs[-1]
    cut.append((size, min(count, math.floor(left / full_epoch + 1e-9)), rate))
    return [(size, count, rate) for size, count, rate in cut if count > 0 or size == full]


def planned_work(plan: list[Phase], train_images: int, batch_size: int) -> dict:
    """The plan in numbers: epochs per size, optimizer steps, images seen at full-size cost."""
    full = plan[-1].image_size
    steps_per_epoch = math.ceil(train_images / batch_size)
    return {
        "epochs_by_size": {str(p.image_size): p.epochs for p in plan},
        "steps": steps_per_epoch * sum(p.epochs for p in plan),
        "images_at_full_size_cost": round(sum(p.epochs * train_images * image_cost(p.image_size, full) for p in plan)),
    }


def data_fingerprint(preprocessed: Path, splits: Sequence[str] = ("train", "val", "test")) -> str:
    """sha256 over the preprocessed data's description: same images, same splits, same size."""
    digest = hashlib.sha256()
    for name in ["meta.json", *(f"{split}/index.csv" for split in splits)]:
        path = preprocessed / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights (n / (2 * n_class)): each class counts as much in the loss."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: float(len(labels) / (2 * counts[c])) if counts[c] else 1.0 for c in (0, 1)}


def distribution_strategy(name: str):
    """The tf.distribute strategy for `train.distribute`; call before TensorFlow touches a device.

    `mirrored` replicates the model on every local GPU, or on two logical CPU devices when
    there is no GPU (the same code path, testable anywhere).
    """
    import tensorflow as tf

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
    precision_reason: str
    strategy: object  # tf.distribute.Strategy
    train: ShardReader
    val: ShardReader
    fingerprint: str
    run_dir: Path  # its epoch checkpoints and history
    resumed: int  # the last epoch a killed run completed (0: a new run)

    @property
    def image_size(self) -> int:
        return self.plan[-1].image_size

    def work(self) -> dict:
        return planned_work(self.plan, len(self.train), self.params.batch_size)


@dataclass
class Fitted:
    """What the epochs produced: the model, and what watched it at full size."""

    model: keras.Model
    throughput: Throughput
    final_callbacks: list
    input_wait: dict[int, float]
    safety_stop: str | None = None  # why train.max_minutes stopped the plan early, if it did
    seconds: float = 0.0


def prepare(params: TrainParams, preprocessed: Path, checkpoints: Path, *, trial: bool = False):
    """The run's setup and its model: new, or after the last completed epoch of a killed run with
    the same params and data. Other runs' checkpoints in `checkpoints` are stale and removed; a
    sweep's `trial` keeps them (trials share one folder) and never opens the test split."""
    strategy = distribution_strategy(params.distribute)
    precision, why = resolve_precision(params.precision, gpu=gpu_with_bf16())
    print(f"train: precision {precision} ({why})")
    image_size = json.loads((preprocessed / "meta.json").read_text())["image_size"]
    keras.utils.set_random_seed(params.seed)
    train, val = ShardReader(preprocessed / "train"), ShardReader(preprocessed / "val")
    splits = ("train", "val") if trial else ("train", "val", "test")
    plan, fingerprint = phases(params, image_size, len(train)), data_fingerprint(preprocessed, splits)
    run_dir = checkpoint_folder(params, fingerprint, checkpoints, keep_others=trial)
    with strategy.scope():
        model, resumed = start_or_resume(params, plan[0], precision, run_dir)
    setup = TrainingRun(params, plan, precision, why, strategy, train, val, fingerprint, run_dir, resumed)
    _announce(setup, model)
    return setup, model


def _announce(setup: TrainingRun, model: keras.Model) -> None:
    params, size, work = setup.params, setup.image_size, setup.work()
    warmup = "".join(f", {p.epochs} warm-up epoch(s) at {p.image_size}" for p in setup.plan[:-1])
    print(
        f"train: {len(setup.train)} train / {len(setup.val)} val images at {size}x{size}, "
        f"{model.count_params():,} parameters at {model.input_shape[1]}, {setup.plan[-1].epochs} epoch(s){warmup}, "
        f"batch {params.batch_size}, {setup.strategy.num_replicas_in_sync} replica(s); "
        f"{work['steps']:,} steps, {work['images_at_full_size_cost']:,} images at full-size cost"
    )


def checkpoint_folder(params: TrainParams, fingerprint: str, checkpoints: Path, keep_others: bool = False) -> Path:
    """The folder of this run's epoch checkpoints, keyed by the params and the data."""
    key = hashlib.sha256(
        json.dumps({"params": asdict(params), "data": fingerprint}, sort_keys=True).encode()
    ).hexdigest()[:16]
    run_dir = checkpoints / key
    for stale in checkpoints.glob("*") if checkpoints.exists() and not keep_others else []:
        if stale != run_dir:
            shutil.rmtree(stale, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def start_or_resume(params: TrainParams, first: Phase, precision: str, run_dir: Path) -> tuple[keras.Model, int]:
    """The model after the last completed epoch of a killed run, or a new one; and that epoch (0: new)."""
    resumed, checkpoint = EpochCheckpoint.latest(run_dir)
    history_file = run_dir / "history.csv"
    if history_file.exists():  # keep only the epochs the checkpoint has; later ones are redone
        history(history_file).query("epoch <= @resumed").to_csv(history_file, index=False)
    if checkpoint:
        print(f"train: resuming after epoch {resumed} from {checkpoint}")
        return load_model(checkpoint), resumed
    return _build(params, first, precision), 0


@dataclass
class _Watchers:
    """The callbacks that watch the whole plan, across its phases."""

    throughput: Throughput
    final: list
    budget: TimeBudget | None
    decay: DecayToZero | None
    extra: Sequence[keras.callbacks.Callback] = field(default_factory=tuple)


def _watchers(setup: TrainingRun, extra: Sequence[keras.callbacks.Callback]) -> _Watchers:
    params, plan = setup.params, setup.plan
    epoch_sizes = [p.image_size for p in plan for _ in range(p.first_epoch, p.last_epoch)]
    steps_per_epoch = math.ceil(len(setup.train) / params.batch_size)
    budget = TimeBudget(params.max_minutes, epoch_sizes, setup.run_dir / "budget.json") if params.max_minutes else None
    decay = (
        DecayToZero(params.lr_schedule, steps_per_epoch, len(epoch_sizes) * steps_per_epoch)
        if params.lr_schedule != "constant"
        else None
    )
    final = optional_callbacks(params, has_validation=len(setup.val) > 0)
    return _Watchers(Throughput(params.batch_size), final, budget, decay, extra)


def fit_phases(model: keras.Model, setup: TrainingRun, extra: Sequence[keras.callbacks.Callback] = ()) -> Fitted:
    """Each phase's epochs at its image size, the weights carried up between phases; with the
    full-size throughput, the callbacks that watched the full-size epochs, and the share of each
    size's step time spent waiting for data. `extra` callbacks watch every epoch of every phase."""
    params, plan, resumed = setup.params, setup.plan, setup.resumed
    watch = _watchers(setup, extra)
    augment = augmentation(params.seed, params.random_resized_crop) if params.augment else None
    input_wait = {}
    for phase in plan:
        if resumed >= phase.last_epoch:
            continue
        if model.input_shape[1] != phase.image_size:
            with setup.strategy.scope():
                model = _grown(model, params, phase, setup.precision)
        if watch.budget and (watch.budget.exhausted or watch.budget.warmup_over and phase is not plan[-1]):
            print(f"train: no time left for the epochs at {phase.image_size}; the weights are carried over")
            continue
        start = max(phase.first_epoch, resumed)
        batches = ShardBatches(
            setup.train,
            params.batch_size,
            shuffle=True,
            seed=params.seed,
            start_epoch=start,
            augment=augment,
            image_size=phase.image_size,
        )
        wait = InputWait(batches)
        model.fit(
            batches,
            validation_data=ShardBatches(setup.val, params.batch_size, shuffle=False, image_size=phase.image_size)
            if len(setup.val)
            else None,
            epochs=phase.last_epoch,
            initial_epoch=start,
            class_weight=class_weights(setup.train.labels) if params.class_weight == "balanced" else None,
            callbacks=_phase_callbacks(setup, phase, watch, wait),
            verbose=1 if sys.stdout.isatty() else 2,
        )
        input_wait[phase.image_size] = round(wait.share, 4)
        print(f"train: at {phase.image_size} px the steps waited for data {wait.share:.1%} of their time")
    stop = watch.budget.fired if watch.budget else None
    return Fitted(model, watch.throughput, watch.final, input_wait, stop)


def _phase_callbacks(setup: TrainingRun, phase: Phase, watch: _Watchers, wait: InputWait) -> list:
    is_final = phase is setup.plan[-1]
    if watch.decay:
        watch.decay.base_rate = phase.learning_rate
    return [
        wait,
        HistoryLog(setup.run_dir / "history.csv", phase.image_size),
        EpochCheckpoint(setup.run_dir),
        *([watch.throughput] if is_final else []),
        *([watch.budget] if watch.budget else []),
        *([watch.decay] if watch.decay else []),
        *(watch.final if is_final else []),
        *watch.extra,
    ]


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


def history(history_file: Path) -> pd.DataFrame:
    """Per-epoch log, epochs counted from 1; an epoch that was redone after a kill appears once."""
    frame = pd.read_csv(history_file)
    frame = frame.drop_duplicates("epoch", keep="last")
    return frame.reindex(columns=HISTORY_COLUMNS)
