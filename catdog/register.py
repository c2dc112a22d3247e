"""Stage 6, register: add the evaluated model to the registry and let the gate decide."""

from __future__ import annotations

import subprocess
from pathlib import Path

from catdog.config import Params
from catdog.files import read_json, write_json
from catdog.registry import Decision, Registry


def code_revision(project_dir: Path) -> str:
    """The git commit of the code, '+dirty' when uncommitted changes exist; 'unknown' outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_dir,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git repository)"
    return commit + ("+dirty" if dirty else "")


def run(params: Params, project_dir: Path, model_dir: Path, metrics_dir: Path, registry: Registry) -> Decision:
    metrics = read_json(metrics_dir / "evaluate.json")
    trained = read_json(model_dir / "train.json")
    card = {
        "params": params.to_dict(),
        "metrics": metrics,
        "training": trained,
        "data_fingerprint": trained["data_fingerprint"],
        "code_revision": code_revision(project_dir),
    }
    decision = registry.register(model_dir / "model.keras", card, params.register.min_accuracy)
    state = registry.state()
    write_json(metrics_dir / "register.json", {
        "version": decision.version,
        "production": decision.production,
        "reason": decision.reason,
        "production_version": state["production"],
        "accuracy": metrics["accuracy"],
    })
    verdict = "PRODUCTION" if decision.production else "candidate"
    print(f"register: {decision.version} is {verdict}: {decision.reason}")
    return decision
