"""Flow `sweep`: tune train params as `catdog sweep` does, with the trials on Dask.

    prefect deployment run sweep/on-demand --param name=lr-batch --param jobs=2
    prefect deployment run sweep/on-demand --param dask_address=tcp://scheduler:8786 \
        --param storage=postgresql://user:pass@db/optuna --param jobs=8

The data stages run once through DVC (the train flow's own tasks); then `jobs` sweep workers run
as tasks on a temporary local Dask cluster, or on the running one at `dask_address`, which workers
on other machines join with `dask worker tcp://scheduler:8786`. Those machines need the project
folder at the same path and a study they can all reach (`storage`, a database URL); on one
machine the journal file in data/sweeps/NAME/ is enough.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow

from catdog.core.config import load_params
from catdog.core.files import locked
from catdog.core.paths import project
from catdog.tuning.study import CONFIRM, check_settings, place
from catdog.tuning.sweep import open_studies, queue_confirmations
from flows.preprocess import task_runner
from tasks.stages import run_stage
from tasks.sweep import publish_sweep, sweep_worker

PROJECT_DIR = Path(__file__).resolve().parents[1]
DATA_STAGES = ("source", "ingest", "validate", "testset", "preprocess")


@flow(name="sweep-trials", description="sweep workers, one task each, until the phase has no trial left")
def sweep_trials(project_dir: str, name: str, storage: str | None, phase: str, jobs: int, threads: int) -> int:
    futures = [sweep_worker.submit(project_dir, name, storage, phase, number, threads) for number in range(jobs)]
    return sum(1 for future in futures if future.result() == 0)


@flow(name="sweep", description="data stages once, then trials on Dask with pruning, then the best rerun with seeds")
def sweep(
    name: str = "default",
    jobs: int = 2,
    storage: str | None = None,
    dask_address: str | None = None,
    project_dir: str = str(PROJECT_DIR),
) -> str:
    paths = project(project_dir)
    params = load_params(paths.params)
    where = place(paths, name, storage)
    check_settings(params, where)
    with locked(paths.pipeline_lock):  # after a pipeline run in this workspace, not during it
        for stage in DATA_STAGES:
            run_stage(stage, project_dir)
    open_studies(params, paths, where)
    threads = 1 if dask_address else max(1, (os.cpu_count() or 1) // jobs)
    runner = task_runner("dask", dask_address, jobs)
    sweep_trials.with_options(task_runner=runner)(project_dir, name, storage, "", jobs, threads)
    if queue_confirmations(params, where):
        sweep_trials.with_options(task_runner=runner)(project_dir, name, storage, CONFIRM, jobs, threads)
    return publish_sweep(project_dir, name, storage)


if __name__ == "__main__":
    sweep()
