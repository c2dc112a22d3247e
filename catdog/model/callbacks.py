"""What watches and steers training, epoch by epoch and step by step (Keras callbacks): atomic epoch
checkpoints, the time budget, the learning-rate decay, the history log, throughput and input wait."""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import keras
import pandas as pd

from catdog.core.config import TrainParams
from catdog.core.files import read_json, write_json
from catdog.core.live import HISTORY_COLUMNS, live_name
from catdog.model.batches import ShardBatches


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


class TimeBudget(keras.callbacks.Callback):
    """`train.max_minutes`, a safety stop: the model then depends on the host's speed, so when it
    cuts the plan it says so (`fired`, printed and kept in train.json). Size a run with
    `train.budget_images` instead, which counts work.

    Stops after the epoch if the next one would not fit. During a warm-up it also keeps time
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
        self.fired: str | None = None

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
            self._fire(f"ended the warm-up after epoch {epoch + 1} to keep time for an epoch at {full}")
            self.model.stop_training = self.warmup_over = True
        elif not self._fits(following):
            self._fire(f"stopped after epoch {epoch + 1}: another would exceed train.max_minutes")
            self.model.stop_training = self.exhausted = True

    def _fire(self, what: str) -> None:
        self.fired = f"train.max_minutes ({self.seconds / 60:g}) {what}"
        print(
            f"train: SAFETY STOP: {self.fired}; the plan was cut by this host's speed, so this model "
            "is not reproducible (fix: size the run with train.budget_images or the epochs)"
        )


class DecayToZero(keras.callbacks.Callback):
    """The learning rate falls from the phase's rate to zero over the planned steps, linearly or
    along a half cosine ("Budgeted Training", Li et al., ICLR 2020: robust for any fixed budget).
    Progress counts steps, not seconds, so the schedule is the same on any host, and a resumed
    run continues where it was. `base_rate` is set by each phase."""

    def __init__(self, shape: str, steps_per_epoch: int, total_steps: int, base_rate: float = 0.0):
        super().__init__()
        self.shape, self.base_rate = shape, base_rate
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        done = (self.epoch * self.steps_per_epoch + batch) / max(1, self.total_steps)
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
            self.path, mode="a", header=not self.path.exists(), index=False
        )


def optional_callbacks(params: TrainParams, has_validation: bool) -> list:
    """Early stopping and the plateau schedule; they watch val_loss at the full image size only."""
    callbacks = []
    if params.early_stopping_patience and has_validation:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True, verbose=1
            )
        )
    if params.reduce_lr_patience and has_validation:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=params.reduce_lr_patience, verbose=1
            )
        )
    return callbacks


def restore_best_epoch(model: keras.Model, callbacks: list) -> None:
    """Keras restores the best epoch only when EarlyStopping itself stopped the run; do it
    also when the epochs or the time budget ran out first."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.best_weights is not None:
            model.set_weights(callback.best_weights)


class LiveLog(keras.callbacks.Callback):
    """Each epoch's Keras metrics, the learning rate and the image size, at step = the epoch
    (counted from 1, across every phase of progressive resizing)."""

    def __init__(self, live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch, logs=None):
        self.log(epoch + 1, {**(logs or {}), "learning_rate": self.model.optimizer.learning_rate})
        self.live.log_metric("train/image_size", int(self.model.input_shape[1]))
        self.live.make_summary()

    def log(self, epoch: int, metrics: dict) -> None:
        self.live.step = epoch
        for key, value in metrics.items():
            if key not in ("epoch", "image_size"):
                self.live.log_metric(live_name(key), float(keras.ops.convert_to_numpy(value)))

    def replay(self, history: pd.DataFrame) -> None:
        """The epochs a killed run completed before its checkpoint, logged again in a new folder."""
        for row in history.to_dict("records"):
            self.log(int(row["epoch"]), {k: v for k, v in row.items() if v == v})  # NaN: no validation
            self.live.log_metric("train/image_size", int(row["image_size"]))
        self.live.make_summary()
