"""A real sweep of the spec's space (learning rate x batch size) on the 2,000 shared Kaggle photos,
then the applied winner against the photo recipe on the same test photos, with the gate's paired test.

    python bench/sweep.py [--max-epochs 4] [--jobs 1] [--out bench/results/sweep.json]

1. A throw-away project with the photos as `ingest.source`; the trials start from the recipe's
   options (augmentation, centred inputs) without its warm-up, so each trial trains at 256 px.
2. `catdog sweep --name spec` (successive halving): wall time, trials complete and pruned, epochs
   trained against the full grid's, and the time pruning saved, estimated from each pruned trial's
   own seconds per epoch (a second, unpruned sweep would cost the full grid again).
3. `catdog sweep apply spec` and `dvc repro`: the winner trained and registered (v0001).
4. The recipe (bench/levers.py's) by `dvc repro`: registered as v0002, compared by the gate with
   the winner on the same test photos (exact McNemar).
The leaderboard, the sweep's plots and this summary go to bench/results/ (docs/tuning/ keeps the
plots the README shows).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from catdog.devtools.workspace import BIN, REPO, SHARED_ZIP, copy_project, set_params, tool_env

sys.path.insert(0, str(REPO / "bench"))
from levers import RECIPE  # noqa: E402

RESULTS = REPO / "bench" / "results"
BASE = {
    "ingest": {"source": str(SHARED_ZIP), "max_per_class": None},
    "validate": {"min_side": 32},
    "train": {"augment": True, "center_inputs": True},
    "register": {"min_accuracy": 0.5},
}


def _run(project: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(BIN / args[0]), *args[1:]], cwd=project, env=tool_env(), check=True)
    return time.perf_counter() - started


def measure(work: Path, max_epochs: int, jobs: int) -> dict:
    project = work / "project"
    shutil.rmtree(project, ignore_errors=True)
    copy_project(project)
    set_params(project, {**BASE, "sweep": {"max_epochs": max_epochs, "confirm_top": 2, "confirm_seeds": 1}})
    sweep_seconds = _run(project, "catdog", "sweep", "--name", "spec", "--jobs", str(jobs))
    folder = project / "data/sweeps/spec"
    board = pd.read_csv(folder / "leaderboard.csv")
    pruned = board[board["status"].str.startswith("pruned")]
    seconds_per_epoch = board["minutes"] * 60 / board["epochs"]
    saved = float(((max_epochs - pruned["epochs"]) * seconds_per_epoch[pruned.index]).sum())
    _run(project, "catdog", "sweep", "apply", "spec")
    winner_seconds = _run(project, "dvc", "repro")
    set_params(project, {**RECIPE, "ingest": BASE["ingest"]})
    recipe_seconds = _run(project, "dvc", "repro")
    card = json.loads((project / "data/registry/versions/v0002/card.json").read_text())
    winner = json.loads((project / "data/registry/versions/v0001/card.json").read_text())
    for plot in (folder / "plots").glob("*.png"):
        shutil.copy2(plot, RESULTS / f"sweep-{plot.name}")
    shutil.copy2(folder / "leaderboard.csv", RESULTS / "sweep-leaderboard.csv")
    return {
        "sweep_minutes": round(sweep_seconds / 60, 1),
        "trials": len(board),
        "complete": int((board["status"] == "complete").sum()),
        "pruned": len(pruned),
        "epochs_trained": int(board["epochs"].sum()),
        "epochs_full_grid": len(board) * max_epochs,
        "minutes_saved_by_pruning_estimated": round(saved / 60, 1),
        "best_val_accuracy": float(board["val_accuracy"].max()),
        "confirmed": json.loads((folder / "confirmed.json").read_text()),
        "winner": {"minutes": round(winner_seconds / 60, 1), "metrics": _short(winner["metrics"])},
        "recipe": {"minutes": round(recipe_seconds / 60, 1), "metrics": _short(card["metrics"])},
        "recipe_vs_winner": card["comparison"],
        "leaderboard": board.to_dict("records"),
    }


def _short(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("accuracy", "accuracy_cat", "accuracy_dog", "ece", "test_images")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "sweep.json")
    args = parser.parse_args()
    if not SHARED_ZIP.exists():
        print(f"bench/sweep.py: needs {SHARED_ZIP}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    cpu = subprocess.run(
        ["grep", "-o", "-w", r"avx512_bf16\|avx512_vnni\|amx_bf16", "/proc/cpuinfo"], capture_output=True, text=True
    )
    result = {
        "cpu_flags": sorted(set(cpu.stdout.split())),
        **measure(RESULTS / "sweep-work", args.max_epochs, args.jobs),
    }
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "leaderboard"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
