"""`make levers`: time to accuracy of the real-photo recipe, one lever at a time, over seeds.

Issue 16's goal: the recipe reaches at least 82% on the test split, both classes at least 78%
and ECE at most 0.05, within 20 minutes for the whole run. This runs the recipe (with that
budget) as it is and with each lever of docs/photos-recipe.md switched on alone, for each seed,
in one project, and prints the table docs/photos-recipe.md keeps. The data stages run once (every
configuration trains on the same split); each configuration's own wall time is that of its
`dvc repro` (train, evaluate, register), and its whole-run time adds the data stages' time.

    python bench/levers.py [--seeds 42 7] [--levers baseline lr_schedule ...] [--minutes 20]

It costs (levers x seeds) recipe runs: about 20 minutes each with bfloat16 where the CPU has
it natively. `--smoke` runs every configuration on the embedded data at the tiny test budget.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from catdog.devtools.workspace import (
    BIN,
    REPO,
    SHARED_ZIP,
    TINY_BUDGET,
    copy_project,
    set_params,
    tool_env,
)

RESULTS = REPO / "bench" / "results"

# docs/photos-recipe.md's command, as params
RECIPE = {
    "ingest": {"max_per_class": None},
    "validate": {"min_side": 32},
    "train": {
        "augment": True,
        "center_inputs": True,
        "warmup_sizes": [64, 128],
        "warmup_epochs": [24, 18],
        "warmup_learning_rate": 0.001,
        "epochs": 3,
        "learning_rate": 0.0003,
        "early_stopping_patience": 2,
        "max_minutes": 59,
    },
    "register": {"min_accuracy": 0.78},
}
# Each alone on top of the recipe. Decay and weight averaging replace early stopping (the
# config refuses the pairs that would undo each other).
LEVERS = {
    "baseline": {},
    "lr_schedule": {"train": {"lr_schedule": "cosine", "early_stopping_patience": None}},
    "label_smoothing": {"train": {"label_smoothing": 0.1}},
    "ema": {"train": {"ema_momentum": 0.99, "early_stopping_patience": None}},
    "random_resized_crop": {"train": {"random_resized_crop": 0.35}},
    "flip_tta": {"evaluate": {"flip_tta": True}},
    "more_warmup": lambda base: {"train": {"warmup_epochs": [e * 3 // 2 for e in base["train"]["warmup_epochs"]]}},
}
GOAL = {"accuracy": 0.82, "class_accuracy": 0.78, "ece": 0.05, "minutes": 20}
DATA_STAGES = "preprocess"


def _merged(*changes: dict) -> dict:
    merged: dict = {}
    for change in changes:
        for section, values in change.items():
            merged.setdefault(section, {}).update(values)
    return merged


def _changes(lever: str, base: dict) -> dict:
    changes = LEVERS[lever]
    return changes(base) if callable(changes) else changes


def _scores_only(lever: str, base: dict) -> bool:
    """The lever changes only how the model is scored: the run reuses the baseline's training (run
    just before it), so its whole-run time is the baseline's plus its own."""
    return set(_changes(lever, base)) == {"evaluate"}


def _repro(project: Path, target: str | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "dvc"), "repro", "-q", *([target] if target else [])], cwd=project, env=tool_env(), check=True
    )
    return time.perf_counter() - started


def measure(work: Path, levers: list[str], seeds: list[int], minutes: float, smoke: bool) -> dict:
    project = work / "levers"
    shutil.rmtree(project, ignore_errors=True)
    copy_project(project)
    base = (
        _merged(TINY_BUDGET, {"train": {"augment": True, "warmup_sizes": [8, 16], "warmup_epochs": [1, 1]}})
        if smoke
        else _merged(RECIPE, {"ingest": {"source": str(SHARED_ZIP)}, "train": {"max_minutes": minutes}})
    )
    set_params(project, base)
    base_params = (project / "params.yaml").read_text()
    data_seconds = _repro(project, DATA_STAGES)
    # Scoring-only levers right after the baseline, whose training DVC then skips as unchanged (the run
    # cache cannot bring it back later: train's checkpoints are a persistent output, which DVC never
    # caches by run).
    levers = sorted(levers, key=lambda lever: (lever != "baseline", not _scores_only(lever, base)))
    runs = []
    for seed in seeds:
        baseline_seconds = None
        for lever in levers:
            (project / "params.yaml").write_text(base_params)
            set_params(project, _merged({"train": {"seed": seed}}, _changes(lever, base)))
            seconds = _repro(project)
            if lever == "baseline":
                baseline_seconds = seconds
            trained_for = baseline_seconds if _scores_only(lever, base) and baseline_seconds else 0.0
            metrics = json.loads((project / "data/metrics/evaluate/metrics.json").read_text())
            trained = json.loads((project / "data/model/train.json").read_text())
            runs.append(
                {
                    "lever": lever,
                    "seed": seed,
                    "stage_seconds": round(seconds, 1),
                    "whole_run_minutes": round((data_seconds + trained_for + seconds) / 60, 2),
                    "precision": trained["precision"],
                    "epochs": trained["epochs"],
                    **{k: metrics[k] for k in ("accuracy", "accuracy_cat", "accuracy_dog", "ece", "roc_auc")},
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    return {
        "data_stage_seconds": round(data_seconds, 1),
        "smoke": smoke,
        "minutes": minutes,
        "runs": runs,
        "summary": summarize(runs),
    }


def summarize(runs: list[dict]) -> dict:
    """Per lever: medians and spread over the seeds, and whether every seed met the goal."""
    summary = {}
    for lever in dict.fromkeys(run["lever"] for run in runs):
        mine = [run for run in runs if run["lever"] == lever]
        accuracies = [run["accuracy"] for run in mine]
        summary[lever] = {
            "seeds": len(mine),
            "accuracy_median": statistics.median(accuracies),
            "accuracy_range": [min(accuracies), max(accuracies)],
            "weakest_class": min(min(run["accuracy_cat"], run["accuracy_dog"]) for run in mine),
            "ece_worst": max(run["ece"] for run in mine),
            "whole_run_minutes_worst": max(run["whole_run_minutes"] for run in mine),
            "meets_goal": all(
                run["accuracy"] >= GOAL["accuracy"]
                and run["ece"] <= GOAL["ece"]
                and min(run["accuracy_cat"], run["accuracy_dog"]) >= GOAL["class_accuracy"]
                and run["whole_run_minutes"] <= GOAL["minutes"]
                for run in mine
            ),
        }
    return summary


def table(result: dict) -> str:
    rows = [
        "| lever | test accuracy, median [range] | weakest class | worst ECE | worst whole run | goal |",
        "|---|---|---|---|---|---|",
    ]
    for lever, s in result["summary"].items():
        low, high = s["accuracy_range"]
        rows.append(
            f"| {lever} | {s['accuracy_median']:.1%} [{low:.1%}, {high:.1%}] over {s['seeds']} seed(s) | "
            f"{s['weakest_class']:.1%} | {s['ece_worst']:.3f} | {s['whole_run_minutes_worst']:.1f} min | "
            f"{'met' if s['meets_goal'] else 'missed'} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 7])
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument(
        "--minutes",
        type=float,
        default=GOAL["minutes"] - 3,
        help="train.max_minutes (the data stages and evaluation need the rest of the 20)",
    )
    parser.add_argument("--smoke", action="store_true", help="embedded data, tiny budget: checks the harness only")
    parser.add_argument("--out", type=Path, default=RESULTS / "levers.json")
    parser.add_argument("--work", type=Path, default=RESULTS / "work", help="where the project copy is made")
    args = parser.parse_args()
    if not args.smoke and not SHARED_ZIP.exists():
        sys.exit(f"levers: {SHARED_ZIP} is missing (fix: put the shared photos beside the project, or use --smoke)")
    args.work.mkdir(parents=True, exist_ok=True)
    result = measure(args.work, args.levers, args.seeds, args.minutes, args.smoke)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
