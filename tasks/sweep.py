"""Prefect tasks of flow `sweep`: a sweep worker (the unit that Dask spreads over machines), and
the leaderboard and plots published as artifacts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from catdog.core.config import load_params
from catdog.core.paths import project
from catdog.tuning import results
from catdog.tuning.study import open_study, place
from catdog.tuning.sweep import worker_command
from tasks.stages import stage_env


@task(name="sweep-worker", task_run_name="worker-{number} {phase}")
def sweep_worker(project_dir: str, name: str, storage: str | None, phase: str, number: int, threads: int) -> int:
    """One worker process taking trials until none is left, on whichever machine runs this task (it
    must see the project folder at the same path, and the study: a database URL across machines)."""
    logger = get_run_logger()
    paths = project(project_dir)
    command = worker_command(place(paths, name, storage), paths.root, phase, threads, float("inf"))
    process = subprocess.Popen(
        command, cwd=paths.root, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in process.stdout:
        if line.startswith(("sweep:", "train:")):
            logger.info(line.rstrip())
    code = process.wait()
    if code != 0:
        raise RuntimeError(f"sweep worker {number} exited with {code}")
    return code


@task(name="publish-sweep")
def publish_sweep(project_dir: str, name: str, storage: str | None) -> str:
    paths = project(project_dir)
    params = load_params(paths.params)
    where = place(paths, name, storage)
    text = results.finish(where, params.sweep)
    board = results.leaderboard(open_study(params.sweep, where), params.sweep)
    create_markdown_artifact(f"# sweep {name}\n\n```\n{text}\n```", key="catdog-sweep", description=f"sweep {name}")
    create_table_artifact(
        board.astype(object).where(board.notna(), None).to_dict("records"),
        key="catdog-sweep-leaderboard",
        description="every trial: setting, validation objective, best epoch, status",
    )
    create_link_artifact(Path(where.folder / "plots").as_uri(), f"sweep {name}: plots", key="catdog-sweep-plots")
    get_run_logger().info(text)
    return text
