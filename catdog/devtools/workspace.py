"""A working copy of this project in another folder, run with the real `dvc` and `catdog`.

Benchmarks and tests build throw-away projects this way: the pipeline's own files copied,
`dvc init`, and an environment whose PATH finds this interpreter's dvc, catdog and prefect.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import yaml

from catdog.core.tools import BIN, program, tool_env  # noqa: F401 (BIN and tool_env: for tests and benches)

REPO = Path(__file__).resolve().parents[2]
SHARED_ZIP = REPO.parent / "shared" / "data" / "dogs-vs-cats-2000.zip"  # real photos beside the project, if any
# Every stage in seconds: 32x32 inputs, 20 images per class, one epoch, any model registered.
TINY_BUDGET = {
    "ingest": {"max_per_class": 20},
    "validate": {"workers": 1},
    "preprocess": {"image_size": 32, "workers": 1, "val_fraction": 0.2, "test_fraction": 0.25},
    "train": {"epochs": 1, "batch_size": 8},
    "register": {"min_accuracy": 0.0},
}
PROJECT_FILES = ["dvc.yaml", "params.yaml", "catdog", "tasks", "flows", "deployments", ".gitignore"]


def set_params(project: Path, changes: dict) -> None:
    """Merge {section: {key: value}} into the project's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def copy_project(target: Path, *, git: bool = False) -> Path:
    """The pipeline's files in `target`, DVC initialised (with git, or with `--no-scm`)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, target / name)

    def quietly(*args: str) -> None:
        subprocess.run(args, cwd=target, env=tool_env(), check=True, capture_output=True)

    if git:
        quietly("git", "init", "-q")
        quietly("git", "config", "user.email", "test@catdog.local")
        quietly("git", "config", "user.name", "catdog test")
        quietly(program("dvc"), "init", "-q")
    else:
        quietly(program("dvc"), "init", "-q", "--no-scm")
    _merge_dvc_config(REPO / ".dvc" / "config", target / ".dvc" / "config")
    return target


def _merge_dvc_config(source: Path, target: Path) -> None:
    """The project's DVC settings (its cache's link types) on top of what `dvc init` wrote."""
    config = configparser.ConfigParser()
    config.read([target, source])
    with open(target, "w") as f:
        config.write(f)
