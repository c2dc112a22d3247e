"""Flow `preprocess-shards`: the preprocess stage fanned out as one mapped task per shard.

The task runner is the flow's choice: threads on this machine by default, or Dask
(prefect-dask), on a temporary local cluster or on a running one given its scheduler address.
Dask workers must see the project folder at the same path (a shared file system).
DVC still owns the stage: the flow runs only when `dvc status` says the stage is out of date,
writes the same output as `catdog preprocess`, and then `dvc commit`s it into dvc.lock.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from catdog.core.config import load_params
from catdog.core.files import atomic_dir
from catdog.core.paths import project as project_paths
from catdog.data import reuse
from catdog.stages import preprocess
from tasks.preprocess import convert_shard
from tasks.stages import (
    StageFailed,
    StageOutcome,
    dvc_command,
    stage_env,
    stage_outputs,
)

TaskRunnerKind = Literal["threads", "dask"]


def task_runner(kind: TaskRunnerKind, dask_address: str | None = None, workers: int | None = None):
    workers = workers or os.cpu_count() or 1
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
        )
    raise ValueError(f"task runner {kind!r}: use 'threads' or 'dask'")


def _dvc(project: Path, *args: str) -> str:
    result = subprocess.run(dvc_command(*args), cwd=project, env=stage_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise StageFailed(
            "preprocess", f"dvc {' '.join(args)}: {(result.stderr or result.stdout).strip()}", transient=False
        )
    return result.stdout


@flow(name="preprocess-shards", description="preprocess: one mapped task per shard, then dvc commit")
def preprocess_shards(project_dir: str) -> dict:
    logger = get_run_logger()
    project = Path(project_dir)
    outputs = stage_outputs(project, "preprocess")
    if _dvc(project, "status", "--json", "preprocess").strip() in ("{}", ""):
        logger.info("stage preprocess: unchanged, skipped")
        return StageOutcome("preprocess", False, outputs).to_dict()

    all_params = load_params(project / "params.yaml")
    params = all_params.preprocess
    paths = project_paths(project)
    accepted, jobs, held = preprocess.plan(params, paths.validated, preprocess.hashes(paths.testset))
    logger.info(f"{len(accepted)} images in {len(jobs)} shards")
    with atomic_dir(paths.preprocessed) as folder:
        futures = convert_shard.map(
            jobs,
            params=unmapped(params),
            ingested=unmapped(str(paths.ingested)),
            folder=unmapped(str(folder)),
            cache_dir=unmapped(str(paths.cache)),
            max_pixels=unmapped(all_params.validate.max_pixels),
        )
        converted = sum(future.result() for future in futures)  # a failed shard raises: nothing is kept
        counts = preprocess.finish(accepted, params, folder, held)
    _dvc(project, "--wait-for-lock", "commit", "--force", "preprocess")
    preprocess.array_cache(params, paths.cache).prune(set(accepted["sha256"]))
    reused = reuse.report(paths.cache, "preprocess", len(accepted) - converted, converted)
    logger.info(f"stage preprocess: {counts}, {reused}; committed to dvc.lock")
    return StageOutcome("preprocess", True, outputs).to_dict()


def fan_out_preprocess(project_dir: str, runner: TaskRunnerKind = "threads", dask_address: str | None = None) -> dict:
    """Run `preprocess-shards` as a subflow on the chosen task runner."""
    workers = load_params(Path(project_dir) / "params.yaml").preprocess.workers
    return preprocess_shards.with_options(task_runner=task_runner(runner, dask_address, workers))(project_dir)
