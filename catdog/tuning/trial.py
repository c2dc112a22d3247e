"""One trial: the spec model trained by the pipeline's own training code on the preprocessed train
split, judged on the validation split after every epoch, stopped when the pruner says so.

Reads  data/preprocessed/ (train and val shards, meta.json; never the test split).
Writes data/sweeps/NAME/trials/NNNN/ (DVCLive: metrics.json, plots/metrics/{train,eval}/*.tsv,
       params.yaml), epoch checkpoints in data/sweeps/NAME/checkpoints/ while it runs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras
import optuna
from optuna_integration import KerasPruningCallback

from catdog.core.config import Params
from catdog.core.live import open_live
from catdog.model.callbacks import LiveLog
from catdog.model.training import fit_phases, history, prepare
from catdog.tuning.space import SEED, confirmation_seeds, suggest, trial_params
from catdog.tuning.study import SweepPlace, trial_folder, worker_id


def values_of(trial: optuna.Trial, params: Params) -> dict:
    """The trial's setting, sampled from the space; a confirmation run was queued with its setting
    and seed, which these same suggestions return (one distribution per name in a study)."""
    values = suggest(trial, params.sweep.space)
    if "seed" in trial.user_attrs:
        values[SEED] = trial.suggest_categorical(SEED, confirmation_seeds(params))
    return values


def objective(trial: optuna.Trial, params: Params, preprocessed: Path, where: SweepPlace) -> float:
    """The best validation value of the trial's epochs at full size; its epoch goes to user_attrs."""
    trial.set_user_attr("worker", worker_id())
    values = values_of(trial, params)
    train = trial_params(params.train, values, params.sweep.max_epochs)
    metric = params.sweep.objective
    folder = trial_folder(where, trial)
    shutil.rmtree(folder, ignore_errors=True)
    live = open_live(folder)
    live.log_params({**values, "train.epochs": train.epochs, "trial": trial.number})
    started = time.perf_counter()
    keras.backend.clear_session()
    setup, model = prepare(train, preprocessed, where.checkpoints, trial=True)
    log = LiveLog(live)
    _replay(trial, setup.run_dir, metric, log)  # a rerun after a kill resumes from its checkpoint
    try:  # the pruner looks after every epoch and stops a weak trial at once
        fit_phases(model, setup, extra=[log, EpochPruning(trial, metric)])
    except optuna.TrialPruned:
        trial.set_user_attr("pruned_at_epoch", live.step)
        raise
    finally:
        trial.set_user_attr("minutes", round((time.perf_counter() - started) / 60, 2))
        _record(trial, setup.run_dir, metric, setup.image_size)
        live.end()
        shutil.rmtree(setup.run_dir, ignore_errors=True)
    return trial.user_attrs["best_value"]


class EpochPruning(KerasPruningCallback):
    """Optuna's Keras callback with the step counted as epochs are (from 1, across every phase), so
    that `sweep.min_epochs` and the pruners' rungs are epochs trained."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def _replay(trial: optuna.Trial, run_dir: Path, metric: str, log: LiveLog) -> None:
    history_file = run_dir / "history.csv"
    if history_file.exists():
        epochs = history(history_file)
        log.replay(epochs)
        for row in epochs.dropna(subset=[metric]).to_dict("records"):
            trial.report(float(row[metric]), int(row["epoch"]))


def _record(trial: optuna.Trial, run_dir: Path, metric: str, full_size: int) -> None:
    """The best epoch at full size by the validation metric, and how many epochs ran."""
    history_file = run_dir / "history.csv"
    if not history_file.exists():
        return
    epochs = history(history_file)
    trial.set_user_attr("epochs_trained", int(len(epochs)))
    full = epochs[(epochs["image_size"] == full_size) & epochs[metric].notna()]
    if len(full):
        best = full.loc[full[metric].idxmin() if metric == "val_loss" else full[metric].idxmax()]
        trial.set_user_attr("best_epoch", int(best["epoch"]))
        trial.set_user_attr("best_value", float(best[metric]))
