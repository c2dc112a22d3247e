"""A sweep worker: takes the study's trials one at a time, trains each, and tells the study how it
went, until the sweep has all its trials or its time is up. `catdog sweep --jobs N` starts N of
them on this machine; the Prefect flow `sweep` runs them as tasks on Dask workers, which may be
other machines that see the project folder at the same path and the study's database.

    python -m catdog.tuning.worker --name NAME [--storage URL] [--phase confirm] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from contextlib import ExitStack
from functools import partial

import optuna

from catdog.core.config import Params
from catdog.core.entry import guarded, stage_options
from catdog.core.files import locked
from catdog.core.paths import ProjectPaths
from catdog.tuning.study import CONFIRM, SweepPlace, open_study, pending
from catdog.tuning.trial import objective


def work(params: Params, paths: ProjectPaths, where: SweepPlace, phase: str, total: int | None, deadline: float) -> int:
    """Run trials until none is left; returns how many this worker ran."""
    study = open_study(params.sweep, where, phase)
    ran = 0
    while time.time() < deadline:
        # Whether a trial is left, and taking it, are one step for this machine's workers: the claim is
        # held from the check until the trial exists, then released by the objective (a second close is a no-op).
        with ExitStack() as claim:
            claim.enter_context(locked(where.folder / ".claim.lock"))
            if not pending(study, 0 if phase == CONFIRM else total):
                break
            study.optimize(
                partial(_objective, claim=claim, params=params, paths=paths, where=where),
                n_trials=1,
                catch=(Exception,),
            )
        ran += 1
    return ran


def _objective(trial: optuna.Trial, claim: ExitStack, params: Params, paths: ProjectPaths, where: SweepPlace) -> float:
    """The trial, its claim released first; a failure is kept with its reason, and the sweep goes on."""
    claim.close()
    print(f"sweep: trial {trial.number} started", flush=True)
    try:
        value = objective(trial, params, paths.preprocessed, where)
    except optuna.TrialPruned:
        print(f"sweep: trial {trial.number} pruned", flush=True)
        raise
    except Exception as error:
        traceback.print_exc()
        trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
        raise
    print(f"sweep: trial {trial.number} complete: {value}", flush=True)
    return value


def set_threads(threads: int | None) -> None:
    """TensorFlow's threads per worker process, so N workers share the cores instead of fighting."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = stage_options(argparse.ArgumentParser(prog="python -m catdog.tuning.worker"))
    parser.add_argument("--name", required=True)
    parser.add_argument("--storage", help="the study's database URL (default: the journal file in the sweep folder)")
    parser.add_argument("--phase", default="", choices=("", CONFIRM))
    parser.add_argument("--threads", type=int, help="TensorFlow threads (default: all cores)")
    parser.add_argument("--deadline", type=float, default=float("inf"), help="no trial starts after (Unix time)")
    args = parser.parse_args(argv)

    def run() -> None:
        from catdog.core.config import load_params
        from catdog.core.paths import project
        from catdog.tuning.space import total_trials
        from catdog.tuning.study import place

        paths = project(args.project)
        params = load_params(paths.params)
        set_threads(args.threads)
        work(
            params, paths, place(paths, args.name, args.storage), args.phase, total_trials(params.sweep), args.deadline
        )

    return guarded("catdog sweep worker", run)


if __name__ == "__main__":
    sys.exit(main())
