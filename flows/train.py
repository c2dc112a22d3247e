"""Flow `train`: the catdog pipeline, stage by stage, as DVC runs it.

    prefect deployment run train/nightly
    prefect deployment run train/on-demand --param overrides='{"train.epochs": 3}'
    prefect deployment run train/on-demand --param preprocess_runner=dask \
        --param dask_address=tcp://scheduler:8786
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from catdog.core import lockfile
from catdog.core.config import write_overrides
from catdog.core.files import locked
from catdog.core.paths import project as project_paths
from flows.preprocess import TaskRunnerKind, fan_out_preprocess
from tasks.report import publish_run_report
from tasks.stages import run_stage

PROJECT_DIR = Path(__file__).resolve().parents[1]


@flow(
    name="train", description="source -> ingest -> validate -> testset -> preprocess -> train -> evaluate -> register"
)
def train(
    overrides: dict[str, Any] | None = None,
    project_dir: str = str(PROJECT_DIR),
    preprocess_runner: TaskRunnerKind = "threads",
    dask_address: str | None = None,
) -> dict:
    """`overrides` maps dotted params keys to values, e.g. {"train.epochs": 3}; they are
    validated before any stage runs and written to params.yaml, so dvc.lock records them.
    Preprocessing fans out over shards on `preprocess_runner`: "threads" here, or "dask" on a
    temporary local cluster or the running one at `dask_address`."""
    # One run per workspace, whichever deployment started it: a nightly and an on-demand run take turns.
    with locked(project_paths(project_dir).pipeline_lock, on_wait=_say_waiting):
        outcomes, changes = _stages(project_dir, overrides, preprocess_runner, dask_address)
    return {"stages": outcomes, "params_changed": {k: list(v) for k, v in changes.items()}}


def _say_waiting() -> None:
    get_run_logger().warning("another pipeline run holds this workspace (data/.pipeline.lock): waiting for it")


def _stages(project_dir: str, overrides, preprocess_runner, dask_address) -> tuple[list[dict], dict]:
    repaired = lockfile.repair(project_paths(project_dir))  # after a run killed while DVC wrote dvc.lock
    if repaired:
        get_run_logger().warning(repaired)
    changes = write_overrides(Path(project_dir) / "params.yaml", overrides or {})
    if changes:
        get_run_logger().info(f"params changed (kept in params.yaml for later runs too): {changes}")

    source = run_stage("source", project_dir)
    ingest = run_stage("ingest", project_dir)
    validate = run_stage("validate", project_dir)
    testset = run_stage("testset", project_dir)
    preprocess = fan_out_preprocess(project_dir, preprocess_runner, dask_address)
    trained = run_stage("train", project_dir)
    evaluate = run_stage("evaluate", project_dir)
    register = run_stage("register", project_dir)

    outcomes = [source, ingest, validate, testset, preprocess, trained, evaluate, register]
    publish_run_report(project_dir, outcomes, changes)
    return outcomes, changes


if __name__ == "__main__":
    train()
