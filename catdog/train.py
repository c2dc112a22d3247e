"""Stage 4, train: fit the spec CNN on the preprocessed shards with Adam.

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
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from catdog.batches import ShardBatches, augmentation
from catdog.config import TrainParams
from catdog.files import read_json, write_json
from catdog.model import build_model, carry_weights, load_model
from catdog.precision import gpu_with_bf16
from catdog.precision import resolve as resolve_precision
from catdog.shards import ShardReader

HISTORY_COLUMNS = ["epoch", "image_size", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]


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


class EpochCheckpoint(keras.callbacks.Callback):
    """`epoch-NNNN.keras` after each epoch: written to a temp file, renamed, older ones removed."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch, logs=None):
        tmp = self.folder / f".partial-{os.getpid()}.keras"
        self.model.save(tmp)
        target = self.folder / f"epoch-{epoch + 1:04d}.keras"
        os.replace(tmp, target)
        for older in self.folder.glob("epoch-*.keras"):
            if older != target:
                older.unlink()

    @staticmethod
    def latest(folder: Path) -> tuple[int, Path | None]:
        """(completed epochs, checkpoint file) of the newest complete checkpoint, or (0, None)."""
        files = sorted(folder.glob("epoch-*.keras"))
        return (int(files[-1].stem.split("-")[1]), files[-1]) if files else (0, None)


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


class InputWait(keras.callbacks.Callback):
    """How long the training steps waited for their batch, as a share of the steps' time.

    Keras' worker thread makes the batches ahead of the steps (ShardBatches, up to 4 ahead) and
    the steps take them in the order they were made; each records when it was ready. A step asks
    for its batch when it begins: if the batch was ready later than that, the step waited for the
    difference. The first step of a fit is left out: it traces the graph before it asks for data."""

    def __init__(self, batches: ShardBatches):
        super().__init__()
        self.batches, self.waited, self.stepped, self.steps = batches, 0.0, 0.0, 0

    def on_train_batch_begin(self, batch, logs=None):
        self._began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        ended = time.perf_counter()
        made = self.batches.made[self.steps] if self.steps < len(self.batches.made) else self._began
        self.steps += 1
        if self.steps > 1:
            self.stepped += ended - self._began
            self.waited += max(0.0, min(made, ended) - self._began)

    @property
    def share(self) -> float:
        return self.waited / self.stepped if self.stepped else 0.0


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights (n / (2 * n_class)): each class counts as much in the loss."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: float(len(labels) / (2 * counts[c])) if counts[c] else 1.0 for c in (0, 1)}


class TimeBudget(keras.callbacks.Callback):
    """Stops after the epoch if the next one would not fit. During a warm-up it also keeps time
    for one epoch at the full size, so that the saved model has trained at the size it is used
    at: when the warm-up leaves no room for that, the warm-up ends early (`warmup_over`).

    Epochs are estimated per pixel of input, times the next epoch's pixels (warm-up epochs are
    smaller), from the largest size trained so far: the median of its last three epochs, so that
    a passing slowdown (another job on the machine) does not cut the rest of the plan for good.
    Small epochs cost a little more per pixel, so a larger size estimated from a smaller one errs
    on the safe side. With `spent_file`, the seconds of the completed epochs are kept there, so
    that a run resumed after a kill has only the rest of its budget."""

    def __init__(self, minutes: float, epoch_sizes: list[int] | None = None, spent_file: Path | None = None):
        super().__init__()
        self.seconds = minutes * 60
        self.epoch_sizes = epoch_sizes or [1]
        self.spent_file = spent_file
        spent = read_json(spent_file)["seconds"] if spent_file is not None and spent_file.exists() else 0.0
        self.epoch_started = time.perf_counter()
        self.started = self.epoch_started - spent
        self.seconds_per_pixel: dict[int, list[float]] = {}  # of each completed epoch, by image size
        self.exhausted = self.warmup_over = False

    def used(self) -> float:
        """The share of the budget used so far."""
        return (time.perf_counter() - self.started) / self.seconds

    def _size(self, epoch: int) -> int:
        return self.epoch_sizes[min(epoch, len(self.epoch_sizes) - 1)]

    def _per_pixel(self) -> float:
        recent = self.seconds_per_pixel[max(self.seconds_per_pixel)][-3:]
        return statistics.median(recent)

    def _fits(self, *sizes: int, after: float | None = None) -> bool:
        """Whether epochs of `sizes` fit in what is left of the budget now, or `after` seconds into it."""
        used = time.perf_counter() - self.started if after is None else after
        return used + self._per_pixel() * sum(size**2 for size in sizes) <= self.seconds

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.epoch_started
        if self.spent_file is not None:
            write_json(self.spent_file, {"seconds": time.perf_counter() - self.started})
        size = self._size(epoch)
        self.seconds_per_pixel.setdefault(size, []).append(seconds / size**2)
        full, following = self.epoch_sizes[-1], self._size(epoch + 1)
        # The full-size epoch is estimated at (full / size)**2 warm-up epochs, so a little noise in
        # those moves its estimate by more than one warm-up epoch: had it fitted before this epoch,
        # end the warm-up now (overrunning by at most this epoch) rather than never train at full size.
        began = self.epoch_started - self.started
        if following != full and not self._fits(following, full) and self._fits(full, after=began):
            print(f"train: ending the warm-up after epoch {epoch + 1} to keep time for an epoch at {full}")
            self.model.stop_training = self.warmup_over = True
        elif not self._fits(following):
            print(f"train: stopping after epoch {epoch + 1}: another would exceed train.max_minutes")
            self.model.stop_training = self.exhausted = True


class DecayToZero(keras.callbacks.Callback):
    """The learning rate falls from the phase's rate to zero as training progresses, linearly or
    along a half cosine ("Budgeted Training", Li et al., ICLR 2020: robust for any fixed budget).
    Progress is the share of train.max_minutes used when there is a budget, else the share of
    the planned steps done (so a resumed run continues where it was)."""

    def __init__(self, shape: str, base_rate: float, steps_per_epoch: int, total_steps: int,
                 budget: TimeBudget | None):
        super().__init__()
        self.shape, self.base_rate, self.budget = shape, base_rate, budget
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        done = (self.budget.used() if self.budget else
                (self.epoch * self.steps_per_epoch + batch) / max(1, self.total_steps))
        self.model.optimizer.learning_rate = self.base_rate * decay_factor(self.shape, done)


def decay_factor(shape: str, done: float) -> float:
    """1 at the start, 0 at the end (done = 1)."""
    done = min(max(done, 0.0), 1.0)
    return 1.0 - done if shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))


class HistoryLog(keras.callbacks.Callback):
    """One CSV row per epoch with fixed columns (epochs counted from 1, with the image size), so
    that phases with different callbacks, and resumed runs, append to one file."""

    def __init__(self, path: Path, image_size: int):
        super().__init__()
        self.path, self.image_size = path, image_size

    def on_epoch_end(self, epoch, logs=None):
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, "image_size": self.image_size, **(logs or {}), "learning_rate": rate}
        pd.DataFrame([row]).reindex(columns=HISTORY_COLUMNS).to_csv(
            self.path, mode="a", header=not self.path.exists(), index=False)


def optional_callbacks(params: TrainParams, has_validation: bool) -> list:
    """Early stopping and the plateau schedule; they watch val_loss at the full image size only."""
    callbacks = []
    if params.early_stopping_patience and has_validation:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.early_stopping_patience,
                                                       restore_best_weights=True, verbose=1))
    if params.reduce_lr_patience and has_validation:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=params.reduce_lr_patience, verbose=1))
    return callbacks


def restore_best_epoch(model: keras.Model, callbacks: list) -> None:
    """Keras restores the best epoch only when EarlyStopping itself stopped the run; do it
    also when the epochs or the time budget ran out first."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.best_weights is not None:
            model.set_weights(callback.best_weights)


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
    for size, epochs, rate in [*zip(params.warmup_sizes, params.warmup_epochs, [warmup_rate] * len(params.warmup_sizes)),
                               (image_size, params.epochs, params.learning_rate)]:
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


def run(params: TrainParams, preprocessed: Path, model_dir: Path, checkpoints: Path, metrics_dir: Path) -> TrainResult:
    strategy = distribution_strategy(params.distribute)
    precision, why = resolve_precision(params.precision, gpu=gpu_with_bf16())
    print(f"train: precision {precision} ({why})")
    image_size = json.loads((preprocessed / "meta.json").read_text())["image_size"]
    keras.utils.set_random_seed(params.seed)
    train, val = ShardReader(preprocessed / "train"), ShardReader(preprocessed / "val")
    fingerprint = data_fingerprint(preprocessed)
    run_dir = checkpoint_folder(params, fingerprint, checkpoints)
    plan = phases(params, image_size)
    with strategy.scope():
        model, resumed = start_or_resume(params, plan[0], precision, run_dir)
    warmup = "".join(f", {p.last_epoch - p.first_epoch} warm-up epoch(s) at {p.image_size}" for p in plan[:-1])
    print(f"train: {len(train)} train / {len(val)} val images at {image_size}x{image_size}, "
          f"{model.count_params():,} parameters at {model.input_shape[1]}, {params.epochs} epoch(s){warmup}, "
          f"batch {params.batch_size}, {strategy.num_replicas_in_sync} replica(s)")

    started = time.perf_counter()
    model, throughput, final_callbacks, input_wait = fit_phases(model, params, plan, precision, strategy, train, val,
                                                                run_dir, resumed)
    seconds = time.perf_counter() - started
    restore_best_epoch(model, final_callbacks)
    result = save_model(model, params, run_dir, model_dir, metrics_dir, image_size, seconds, throughput, resumed,
                        {"data_fingerprint": fingerprint, "precision": precision, "precision_reason": why,
                         "input_wait_share": input_wait})
    print(f"train: done in {seconds:.0f} s ({result.images_per_second} img/s at full size) -> {model_dir / 'model.keras'}")
    return result


def checkpoint_folder(params: TrainParams, fingerprint: str, checkpoints: Path) -> Path:
    """The folder of this run's epoch checkpoints, keyed by the params and the data; others are stale."""
    key = hashlib.sha256(json.dumps({"params": asdict(params), "data": fingerprint},
                                    sort_keys=True).encode()).hexdigest()[:16]
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


def fit_phases(model: keras.Model, params: TrainParams, plan: list[Phase], precision: str, strategy,
               train: ShardReader, val: ShardReader, run_dir: Path, resumed: int):
    """Each phase's epochs at its image size, the weights carried up between phases; returns the
    model, the full-size throughput, the callbacks that watched the full-size epochs, and the share
    of each size's step time spent waiting for data."""
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
            with strategy.scope():
                model = _grown(model, params, phase, precision)
        if budget and (budget.exhausted or budget.warmup_over and phase is not plan[-1]):
            print(f"train: no time left for the epochs at {phase.image_size}; the weights are carried over")
            continue
        is_final = phase is plan[-1]
        batches = ShardBatches(train, params.batch_size, shuffle=True, seed=params.seed,
                               start_epoch=max(phase.first_epoch, resumed), augment=augment,
                               image_size=phase.image_size)
        wait = InputWait(batches)
        model.fit(
            batches,
            validation_data=ShardBatches(val, params.batch_size, shuffle=False,
                                         image_size=phase.image_size) if len(val) else None,
            epochs=phase.last_epoch,
            initial_epoch=max(phase.first_epoch, resumed),
            class_weight=class_weights(train.labels) if params.class_weight == "balanced" else None,
            callbacks=[
                wait,
                HistoryLog(run_dir / "history.csv", phase.image_size),
                EpochCheckpoint(run_dir),
                *([throughput] if is_final else []),
                *([budget] if budget else []),
                *([DecayToZero(params.lr_schedule, phase.learning_rate, steps_per_epoch,
                               len(epoch_sizes) * steps_per_epoch, budget)] if params.lr_schedule != "constant" else []),
                *(final_callbacks if is_final else []),
            ],
            verbose=1 if sys.stdout.isatty() else 2,
        )
        input_wait[phase.image_size] = round(wait.share, 4)
        print(f"train: at {phase.image_size} px the steps waited for data {wait.share:.1%} of their time")
    return model, throughput, final_callbacks, input_wait


def save_model(model: keras.Model, params: TrainParams, run_dir: Path, model_dir: Path, metrics_dir: Path,
               image_size: int, seconds: float, throughput: Throughput, resumed: int, facts: dict) -> TrainResult:
    """The model, its history and train.json, each written atomically; the checkpoints are then done with."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".model-{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, model_dir / "model.keras")
    history = _history(run_dir / "history.csv")
    metrics_dir.mkdir(parents=True, exist_ok=True)
    history.to_csv(metrics_dir / "train_history.csv", index=False)
    full_size = history[history["image_size"] == image_size]
    best = full_size.loc[full_size["val_loss"].idxmin(), "epoch"] if full_size["val_loss"].notna().any() else len(history)
    result = TrainResult(
        epochs=len(history),
        best_epoch=int(best) if params.early_stopping_patience else len(history),
        seconds=round(seconds, 1),
        images_per_second=throughput.images_per_second,
        parameters=int(model.count_params()),
        resumed_from_epoch=resumed,
    )
    write_json(model_dir / "train.json", {**asdict(result), "image_size": image_size, **facts})
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _build(params: TrainParams, phase: Phase, precision: str) -> keras.Model:
    return build_model(phase.image_size, phase.learning_rate, params.dropout, params.flatten_dense_lr_scale,
                       params.center_inputs, precision, params.label_smoothing, params.ema_momentum)


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
