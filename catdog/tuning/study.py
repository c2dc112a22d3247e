"""A sweep's Optuna study: where it is stored, how it samples and prunes, and a killed sweep's
leftovers. The study lives in a journal file in the sweep's folder (several processes on one
machine), or in a database given by URL (several machines, e.g. postgresql://...)."""

from __future__ import annotations

import json
import os
import socket
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
from optuna.samplers import RandomSampler
from optuna.trial import TrialState

from catdog.core.config import Params, SweepParams
from catdog.core.errors import CatdogError
from catdog.core.files import write_json
from catdog.core.paths import ProjectPaths
from catdog.tuning.space import grid

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

CONFIRM = "confirm"  # the second study of a sweep: its best settings rerun with more seeds


@dataclass(frozen=True)
class SweepPlace:
    """Where a sweep keeps everything: its folder and its study's storage."""

    name: str
    folder: Path
    storage_url: str | None  # None: the journal file in `folder`

    @property
    def journal(self) -> Path:
        return self.folder / "journal.log"

    @property
    def trials(self) -> Path:
        return self.folder / "trials"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def study_name(self, phase: str = "") -> str:
        return f"{self.name}-{phase}" if phase else self.name


def place(paths: ProjectPaths, name: str, storage_url: str | None = None) -> SweepPlace:
    if not name or "/" in name or name.startswith("."):
        raise CatdogError(f"sweep name {name!r}: use letters, digits, '-' or '_' (e.g. --name lr-batch)")
    return SweepPlace(name, paths.data / "sweeps" / name, storage_url)


def storage(where: SweepPlace):
    if where.storage_url:
        return optuna.storages.RDBStorage(where.storage_url)
    from optuna.storages.journal import JournalFileBackend

    where.folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(where.journal)))


def sampler(sweep: SweepParams, phase: str = "") -> optuna.samplers.BaseSampler:
    if phase == CONFIRM:  # every confirmation run is enqueued with its values
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    if sweep.method == "grid":
        return optuna.samplers.GridSampler(grid(sweep.space), seed=sweep.seed)
    return optuna.samplers.TPESampler(seed=sweep.seed)


def pruner(sweep: SweepParams, phase: str = "") -> optuna.pruners.BasePruner:
    if phase == CONFIRM or sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=sweep.min_epochs)
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=sweep.min_epochs, max_resource=sweep.max_epochs, reduction_factor=sweep.reduction_factor
        )
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=sweep.min_epochs, reduction_factor=sweep.reduction_factor
    )


def direction(sweep: SweepParams) -> str:
    return "minimize" if sweep.objective == "val_loss" else "maximize"


def open_study(sweep: SweepParams, where: SweepPlace, phase: str = "") -> optuna.Study:
    return optuna.create_study(
        storage=storage(where),
        study_name=where.study_name(phase),
        sampler=sampler(sweep, phase),
        pruner=pruner(sweep, phase),
        direction=direction(sweep),
        load_if_exists=True,
    )


def settings(params: Params) -> dict:
    """What a sweep's trials depend on: its own section and the train params they start from."""
    return {"sweep": asdict(params.sweep), "train": asdict(params.train)}


def check_settings(params: Params, where: SweepPlace) -> None:
    """A sweep resumed or joined under the same name must search the same thing."""
    file = where.folder / "sweep.json"
    wanted = settings(params)
    if file.exists():
        started = json.loads(file.read_text())
        if started != json.loads(json.dumps(wanted)):
            changed = sorted(
                f"{section}.{key}"
                for section in wanted
                for key in wanted[section]
                if json.dumps(wanted[section][key]) != json.dumps(started.get(section, {}).get(key))
            )
            raise CatdogError(
                f"sweep {where.name!r} was started with other settings ({', '.join(changed)} changed) "
                f"(fix: start a new sweep with --name, or remove {where.folder} to start this one again)"
            )
    else:
        write_json(file, wanted)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_here(worker: str | None) -> bool:
    """A worker process of this machine that no longer runs."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_stale(where: SweepPlace, phase: str = "") -> list[int]:
    """Trials left running by a killed worker of this machine: marked failed and queued again
    with the same values (their epoch checkpoints let the rerun resume)."""
    # Loaded with a plain sampler: the grid's would stop the study when told of a last trial.
    study = optuna.load_study(study_name=where.study_name(phase), storage=storage(where), sampler=RandomSampler())
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _dead_here(trial.user_attrs.get("worker")):
            study.enqueue_trial(trial.params, user_attrs={**_carried(trial.user_attrs), "retry_of": trial.number})
            study.tell(trial.number, state=TrialState.FAIL)
            recovered.append(trial.number)
    return recovered


def _carried(user_attrs: dict) -> dict:
    return {key: value for key, value in user_attrs.items() if key in ("setting", "seed")}


def pending(study: optuna.Study, total: int | None) -> bool:
    """Whether a trial is queued, or fewer than `total` have been started (None: no limit but
    time). A failed trial that was queued again counts once."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    if total is None:
        return True
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in retried)) < total


def trial_folder(where: SweepPlace, trial) -> Path:
    """A trial's DVCLive folder: trials/NNNN, or trials/confirm-NNNN for a confirmation run."""
    prefix = f"{CONFIRM}-" if trial.study.study_name == where.study_name(CONFIRM) else ""
    return where.trials / f"{prefix}{trial.number:04d}"
