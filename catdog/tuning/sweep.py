"""`catdog sweep`: the data stages once through DVC, then the study's trials on N worker processes
with a progress bar, then the best settings rerun with more seeds, then the leaderboard and plots.

Reads  params.yaml (sweep, train), data/preprocessed/ (made by `dvc repro preprocess`).
Writes data/sweeps/NAME/: sweep.json (what it searches), journal.log (the Optuna study, unless
       --storage names a database), trials/NNNN/ (each trial's DVCLive folder), logs/, leaderboard.csv,
       confirmed.json, plots/*.png. A killed sweep started again with the same name resumes: finished
       trials are kept, and a trial its worker was killed in is run again from its last epoch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from catdog.core.config import Params
from catdog.core.errors import CatdogError
from catdog.core.files import locked
from catdog.core.paths import ProjectPaths
from catdog.core.tools import program, tool_env
from catdog.data.shards import ShardReader
from catdog.tuning import results
from catdog.tuning.space import SEED, total_trials
from catdog.tuning.study import CONFIRM, SweepPlace, check_settings, open_study, pending, place, recover_stale


def run(params: Params, paths: ProjectPaths, name: str, jobs: int = 1, storage_url: str | None = None, progress=True):
    """The whole sweep on this machine; returns the leaderboard's text."""
    where = prepare(params, paths, name, storage_url, progress)
    deadline = time.time() + params.sweep.max_minutes * 60 if params.sweep.max_minutes else float("inf")
    run_workers(params, paths, where, "", jobs, deadline, progress)
    if queue_confirmations(params, where):
        run_workers(params, paths, where, CONFIRM, jobs, float("inf"), progress)
    return results.finish(where, params.sweep)


def prepare(params: Params, paths: ProjectPaths, name: str, storage_url: str | None, progress: bool) -> SweepPlace:
    """Checks first, then the data stages, then the study (a killed sweep's leftovers queued again)."""
    where = place(paths, name, storage_url)
    check_settings(params, where)
    data_stages(paths, progress)
    return open_studies(params, paths, where)


def open_studies(params: Params, paths: ProjectPaths, where: SweepPlace) -> SweepPlace:
    """Once the data stages ran: the search and confirmation studies, with any killed trial queued again."""
    if not len(ShardReader(paths.preprocessed / "val")):
        raise CatdogError(
            "the sweep judges trials on the validation split, which is empty (fix: preprocess.val_fraction > 0)"
        )
    for phase in ("", CONFIRM):  # both studies made, if new
        open_study(params.sweep, where, phase)
    recovered = recover_stale(where) + recover_stale(where, CONFIRM)
    if recovered:
        print(f"sweep: trial(s) {', '.join(map(str, recovered))} had been killed; queued again")
    return where


def data_stages(paths: ProjectPaths, progress: bool = True) -> None:
    """source ... preprocess through DVC, once per sweep (skipped where nothing changed)."""
    if progress:
        print("sweep: data stages (dvc repro preprocess) ...", flush=True)
    command = [program("dvc"), "--wait-for-lock", "repro", "preprocess"]
    with locked(paths.pipeline_lock):  # a pipeline run or another sweep's data stages first: DVC would refuse
        done = subprocess.run(command, cwd=paths.root, env=tool_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise CatdogError(f"the data stages failed (dvc repro preprocess):\n{(done.stderr or done.stdout).strip()}")


def queue_confirmations(params: Params, where: SweepPlace) -> int:
    """The best settings, each queued again with `sweep.confirm_seeds` more seeds (once)."""
    runs = results.confirmation_runs(open_study(params.sweep, where), params)
    confirm = open_study(params.sweep, where, CONFIRM)
    for setting, seed in runs:
        confirm.enqueue_trial(
            {**setting, SEED: seed}, user_attrs={"setting": setting, "seed": seed}, skip_if_exists=True
        )
    return len(runs)


def worker_command(where: SweepPlace, root: Path, phase: str, threads: int, deadline: float) -> list[str]:
    command = [sys.executable, "-m", "catdog.tuning.worker", "--project", str(root), "--name", where.name]
    command += ["--threads", str(threads), "--deadline", str(deadline)]
    command += ["--phase", phase] if phase else []
    return command + (["--storage", where.storage_url] if where.storage_url else [])


def run_workers(params: Params, paths: ProjectPaths, where: SweepPlace, phase: str, jobs: int, deadline, progress):
    """`jobs` worker processes, each with its share of the cores, until the phase has no trial left."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    where.logs.mkdir(parents=True, exist_ok=True)
    workers, logs = [], [open(where.logs / f"worker-{phase or 'search'}-{n}.log", "a") for n in range(jobs)]
    for log in logs:
        command = worker_command(where, paths.root, phase, threads, deadline)
        workers.append(subprocess.Popen(command, cwd=paths.root, env=tool_env(), stdout=log, stderr=subprocess.STDOUT))
    try:
        _watch(params, where, phase, workers, progress)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker, log in zip(workers, logs):
            worker.wait()
            log.close()


def _watch(params: Params, where: SweepPlace, phase: str, workers: list, progress: bool) -> None:
    """A progress bar of finished trials (with the best value) while the workers run."""
    from tqdm import tqdm

    study = open_study(params.sweep, where, phase)
    total = total_trials(params.sweep) if not phase else None
    label = "confirming" if phase else "trials"
    with tqdm(total=total, desc=f"sweep {where.name}: {label}", unit="trial", disable=not progress) as bar:
        while any(worker.poll() is None for worker in workers):
            _update(bar, study)
            time.sleep(1.0)
        _update(bar, study)
    failed = [w for w in workers if w.returncode not in (0, None)]
    if failed and pending(study, 0 if phase else total):
        raise CatdogError(f"{len(failed)} sweep worker(s) failed: see {where.logs}/")


def _update(bar, study) -> None:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    bar.update(len(finished) - bar.n)
    states = {s: sum(t.state == s for t in finished) for s in (TrialState.PRUNED, TrialState.FAIL)}
    bar.set_postfix(pruned=states[TrialState.PRUNED], failed=states[TrialState.FAIL], refresh=False)


def show(params: Params, paths: ProjectPaths, name: str, storage_url: str | None = None) -> str:
    """The leaderboard and plots of a sweep, running or done."""
    where = place(paths, name, storage_url)
    if not where.folder.exists():
        raise CatdogError(f"no sweep {name!r} in {where.folder.parent} (fix: run `catdog sweep --name {name}`)")
    return results.finish(where, params.sweep)


def apply(params: Params, paths: ProjectPaths, name: str, storage_url: str | None = None, exp: bool = False) -> str:
    """The winner into params.yaml (or as a named `dvc exp run`): `dvc repro` then trains it, and the
    gate judges it on the test set against production, as any model."""
    from catdog.core.config import write_overrides

    where = place(paths, name, storage_url)
    best = results.winner(where, params.sweep)
    overrides = results.winner_overrides(best)
    if exp:
        command = [program("dvc"), "exp", "run", "-n", f"sweep-{name}"]
        command += [arg for key, value in overrides.items() for arg in ("-S", f"{key}={value}")]
        subprocess.run(command, cwd=paths.root, env=tool_env(), check=True)
        return f"ran {' '.join(command[1:])}"
    changes = write_overrides(paths.params, overrides)
    changed = ", ".join(f"{key}: {old} -> {new}" for key, (old, new) in changes.items()) or "already there"
    return (
        f"sweep {name}: winner {best.mean:.4f} ± {best.spread:.4f} {params.sweep.objective} over {len(best.values)} "
        f"seed(s); params.yaml: {changed}\nnext: `dvc repro` trains it; register's gate then judges it on the "
        "test set against production"
    )
