"""Faults of the machine, as they happen: a stage on a full disk or a read-only file system stops
with one line naming the path, the cause and the fix, exit code 2, no traceback, no partial file
left behind, and the next run succeeds once the fault is gone. The file systems are real: small
tmpfs mounts (root only; elsewhere these tests skip and say why)."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from catdog.core.entry import guarded
from tests.conftest import env, make_project, run


@contextlib.contextmanager
def tmpfs(where: Path, *options: str):
    """A tiny file system mounted at `where` (which is made), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def stage(project: Path, name: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"catdog.stages.{name}"]
    return subprocess.run(command, cwd=project, env=env(), capture_output=True, text=True, timeout=600)


@pytest.fixture
def validated(tmp_path) -> Path:
    project = make_project(tmp_path / "project")
    run(["dvc", "repro", "validate", "testset"], project)
    return project


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".partial") or ".partial" in p.name]


def test_a_full_disk_stops_the_stage_cleanly_and_the_next_run_succeeds(validated):
    cache = validated / "data/cache/preprocess-arrays"
    with tmpfs(cache, "size=64k"):  # the per-image cache fills up halfway through
        failed = stage(validated, "preprocess")
        assert failed.returncode == 2, failed.stderr
        line = failed.stderr.strip().splitlines()[-1]
        assert line.startswith("catdog preprocess: error: No space left on device:") and str(cache) in line, line
        assert "fix: free space on that disk" in line and "Traceback" not in failed.stderr
        assert _partials(cache) == [] and _partials(validated / "data") == []
        assert not (validated / "data/preprocessed").exists()
    done = stage(validated, "preprocess")  # the disk has room again
    assert done.returncode == 0, done.stderr
    assert (validated / "data/preprocessed/meta.json").exists()


def test_a_read_only_file_system_names_the_folder_and_the_fix(validated):
    with tmpfs(validated / "data/cache/preprocess-arrays", "size=1m", "ro"):
        failed = stage(validated, "preprocess")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "Read-only file system" in failed.stderr and "fix: the file system is read-only" in failed.stderr


def test_the_traceback_is_there_when_asked_for(monkeypatch):
    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/x")

    assert guarded("catdog test", full) == 2
    monkeypatch.setenv("CATDOG_DEBUG", "1")
    with pytest.raises(OSError):
        guarded("catdog test", full)


def test_a_bug_is_not_dressed_up_as_a_fault_of_the_machine():
    def bug():
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError):
        guarded("catdog test", bug)
