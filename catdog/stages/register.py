"""Stage 8 of 8, register: add the evaluated model to the registry, blessed or not by the gate.

Reads  data/model/, data/metrics/ (evaluate/metrics.json, the confusion files), data/ingested/manifest.csv,
       data/validated/, data/testset/, the registry's production model.
Writes data/registry/ (a new version, its card; production when the gate promotes it),
       data/metrics/register.json.

The gate compares the candidate with the current production model on the same test images
(catdog/registry/gate.py). The candidate's answers are evaluate's (confusion.csv); production answers
the same ingested files here, converted at its own input size and resize policy. A candidate the
gate would bless is promoted only if it answers like evaluate through the serving path
(catdog/serving/servable.py).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from catdog.core.config import Params
from catdog.core.entry import stage_main
from catdog.core.files import read_json, write_json
from catdog.core.paths import ProjectPaths
from catdog.data import drift
from catdog.registry import gate
from catdog.registry.store import Decision, Registry, RegistryError
from catdog.serving.servable import servable_problem


def code_revision(project_dir: Path) -> str:
    """The git commit of the code, '+dirty' when uncommitted changes exist; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git repository)"
    return commit + ("+dirty" if dirty else "")


def production_answers(
    registry: Registry, production: str, files: list[Path], max_pixels: int
) -> tuple[np.ndarray | None, str | None]:
    """Production's labels for `files`, or None and why it cannot answer (file missing or damaged)."""
    from catdog.serving.predict import load_for_prediction, predict_files

    try:
        loaded = load_for_prediction(registry, production)
    except (RegistryError, OSError, ValueError) as error:
        return None, str(error)
    results = predict_files(
        loaded.model,
        files,
        loaded.image_size,
        loaded.resize,
        loaded.threshold,
        flip=loaded.flip_tta,
        max_pixels=max_pixels,
    )
    unreadable = [r.path for r in results if r.error]
    if unreadable:
        return None, f"{len(unreadable)} test images are unreadable, e.g. {unreadable[0]}"
    return np.array([r.label for r in results]), None


TEST_SPLIT = "the test split"
UNJUDGED_EXPERIMENT = (
    "; NOT compared with the real production model: this `dvc exp run` has no registry of its own (a queued "
    "experiment runs in a temporary copy without data/registry), so judge it with `dvc exp apply NAME` and "
    "`dvc repro` in the project"
)


def gate_images(metrics_dir: Path, ingested: Path, testset: Path | None) -> tuple[str, pd.DataFrame, Path]:
    """What the gate judges on: the curated test set when there is one, else the test split; as
    (description, the candidate's answers: path, actual, predicted, p_dog, the folder of the files)."""
    curated = metrics_dir / "confusion_curated.csv"
    if testset is not None and curated.exists():
        answers = pd.read_csv(curated)
        if len(answers):
            return f"the curated test set ({len(answers)} images)", answers, testset / "ingested"
    return TEST_SPLIT, pd.read_csv(metrics_dir / "confusion.csv"), ingested


def run(
    params: Params,
    project_dir: Path,
    model_dir: Path,
    metrics_dir: Path,
    ingested: Path,
    registry: Registry,
    validated: Path,
    testset: Path | None = None,
) -> Decision:
    metrics = read_json(metrics_dir / "evaluate" / "metrics.json")
    trained = read_json(model_dir / "train.json")
    judged_on, answers, files = gate_images(metrics_dir, ingested, testset)
    accuracy = float((answers["predicted"] == answers["actual"]).mean())
    production = registry.state()["production"]
    paired, unscorable = None, None
    if production is not None:
        labels, unscorable = production_answers(
            registry, production, [files / path for path in answers["path"]], params.validate.max_pixels
        )
        if labels is not None:
            actual = answers["actual"].to_numpy()
            paired = gate.compare(answers["predicted"].to_numpy() == actual, labels == actual, production)
    verdict = gate.decide(accuracy, params.register, production, paired, unscorable)
    if verdict.production:  # a model the server could not serve as evaluated is never promoted
        problem = servable_problem(model_dir / "model.keras", params, answers, files)
        if problem:
            verdict = gate.Verdict(False, f"not promoted, it fails infra validation: {problem}")
    if judged_on != TEST_SPLIT:
        verdict = dataclasses.replace(verdict, reason=f"on {judged_on}: {verdict.reason}")
    if production is None and os.environ.get("DVC_EXP_BASELINE_REV"):
        verdict = dataclasses.replace(verdict, reason=verdict.reason + UNJUDGED_EXPERIMENT)
    card = {
        "params": params.to_dict(),
        "metrics": metrics,
        "comparison": paired.to_dict() if paired else None,
        "judged_on": judged_on,
        "training": trained,
        "data_fingerprint": trained["data_fingerprint"],
        "data": read_json(metrics_dir / "validate.json"),
        "code_revision": code_revision(project_dir),
    }
    profile = pd.read_csv(validated / "accepted.csv", usecols=drift.PROFILE_COLUMNS)[drift.PROFILE_COLUMNS]
    decision = registry.register(
        model_dir / "model.keras",
        card,
        verdict,
        compared_with=production,
        data_profile=profile,
        test_predictions=answers[["path", "actual", "p_dog"]],
    )
    write_json(
        metrics_dir / "register.json",
        {
            "version": decision.version,
            "production": decision.production,
            "reason": decision.reason,
            "production_version": registry.state()["production"],
            "accuracy": round(accuracy, 4),
            "judged_on": judged_on,
            "comparison": paired.to_dict() if paired else None,
        },
    )
    verdict_word = "PRODUCTION" if decision.production else "candidate"
    print(f"register: {decision.version} is {verdict_word}: {decision.reason}")
    return decision


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> Decision:
    return run(
        params,
        paths.root,
        paths.model_dir,
        paths.metrics,
        paths.ingested,
        Registry(params.registry_path(paths.root)),
        paths.validated,
        paths.testset,
    )


if __name__ == "__main__":
    sys.exit(stage_main("register", stage))
