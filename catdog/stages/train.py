"""Stage 6 of 8, train: fit the spec CNN on the preprocessed shards with Adam.

Reads  data/preprocessed/ (train and val shards, meta.json).
Writes data/model/ (model.keras, train.json); data/metrics/train/ (DVCLive: metrics.json and
       plots/metrics/{train,eval}/*.tsv, one row per epoch); checkpoints in data/checkpoints/
       (a killed run resumes from them).

Resumable: after every epoch the whole model (weights and Adam state) is saved atomically
into a folder keyed by the train params and the data fingerprint, so a killed run resumes
from its last completed epoch and a changed run never picks up a stale checkpoint. (Keras'
BackupAndRestore writes its file in place: a kill mid-write leaves a file it cannot read.)
The plan and the work it costs are catdog/model/training.py's.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from catdog.core.config import Params, TrainParams
from catdog.core.entry import stage_main
from catdog.core.files import write_json
from catdog.core.live import open_live
from catdog.core.paths import ProjectPaths
from catdog.model.callbacks import LiveLog, restore_best_epoch
from catdog.model.training import Fitted, TrainingRun, fit_phases, history, prepare


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    best_epoch: int
    seconds: float
    images_per_second: float
    parameters: int
    resumed_from_epoch: int


def run(params: TrainParams, preprocessed: Path, model_dir: Path, checkpoints: Path, metrics_dir: Path) -> TrainResult:
    setup, model = prepare(params, preprocessed, checkpoints)
    live = open_live(metrics_dir / "train")
    log = LiveLog(live)
    if setup.resumed:
        log.replay(history(setup.run_dir / "history.csv"))
    started = time.perf_counter()
    fitted = fit_phases(model, setup, extra=[log])
    fitted.seconds = time.perf_counter() - started
    restore_best_epoch(fitted.model, fitted.final_callbacks)
    result = save_model(fitted, setup, model_dir)
    live.end()
    print(
        f"train: done in {fitted.seconds:.0f} s ({result.images_per_second} img/s at full size) -> "
        f"{model_dir / 'model.keras'}"
    )
    return result


def save_model(fitted: Fitted, setup: TrainingRun, model_dir: Path) -> TrainResult:
    """The model and train.json, each written atomically; the checkpoints are then done with."""
    model, params, run_dir, image_size = fitted.model, setup.params, setup.run_dir, setup.image_size
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".model-{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, model_dir / "model.keras")
    epochs = history(run_dir / "history.csv")
    full_size = epochs[epochs["image_size"] == image_size]
    best = (
        full_size.loc[full_size["val_loss"].idxmin(), "epoch"] if full_size["val_loss"].notna().any() else len(epochs)
    )
    result = TrainResult(
        epochs=len(epochs),
        best_epoch=int(best) if params.early_stopping_patience else len(epochs),
        seconds=round(fitted.seconds, 1),
        images_per_second=fitted.throughput.images_per_second,
        parameters=int(model.count_params()),
        resumed_from_epoch=setup.resumed,
    )
    facts = {
        "image_size": image_size,
        "data_fingerprint": setup.fingerprint,
        "precision": setup.precision,
        "precision_reason": setup.precision_reason,
        "planned_work": setup.work(),
        "safety_stop": fitted.safety_stop,
        "input_wait_share": fitted.input_wait,
    }
    write_json(model_dir / "train.json", {**asdict(result), **facts})
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> TrainResult:
    return run(params.train, paths.preprocessed, paths.model_dir, paths.checkpoints, paths.metrics)


if __name__ == "__main__":
    sys.exit(stage_main("train", stage))
