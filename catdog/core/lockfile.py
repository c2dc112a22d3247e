"""dvc.lock survives a killed run.

DVC rewrites dvc.lock in place after each stage, so a run killed at that moment can leave it
cut short, and every later `dvc` command then fails ("'./dvc.lock' validation failed"). The
source stage, first in every run, keeps a copy of the lock as the run found it when that copy
is sound (data/cache/dvc.lock.good); `catdog repair-lock`, and the Prefect flow before its
first stage, put the copy back when the lock is damaged. An older lock is always safe: DVC
reruns each stage whose outputs no longer match it (and the per-image caches keep that cheap).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from catdog.core.files import atomic_path
from catdog.core.paths import ProjectPaths


def damage(lock: Path) -> str | None:
    """Why DVC would refuse `lock`, or None when it is sound (or absent)."""
    import yaml
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA

    if not lock.exists():
        return None
    try:
        COMPILED_LOCKFILE_SCHEMA(yaml.safe_load(lock.read_text()) or {})
    except Exception as error:  # a YAML error or a schema violation: either way DVC stops
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


def keep_good_copy(paths: ProjectPaths) -> None:
    if paths.lock.exists() and damage(paths.lock) is None:
        with atomic_path(paths.good_lock) as tmp:
            shutil.copyfile(paths.lock, tmp)


def repair(paths: ProjectPaths) -> str | None:
    """Put back the last sound copy of a damaged dvc.lock and say so; None when it is sound."""
    problem = damage(paths.lock)
    if problem is None:
        return None
    if paths.good_lock.exists():
        with atomic_path(paths.lock) as tmp:
            shutil.copyfile(paths.good_lock, tmp)
        return (
            f"dvc.lock was damaged ({problem}), most likely by a run killed while DVC wrote it; put back "
            f"the copy from the start of the last run: the next `dvc repro` reruns what it must"
        )
    paths.lock.unlink()
    return (
        f"dvc.lock was damaged ({problem}) and no sound copy was kept: removed it, so the next `dvc repro` "
        "reruns every stage (the per-image caches keep that cheap up to training)"
    )
