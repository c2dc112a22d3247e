"""The continuous-training part of `make bench`: what a nightly run costs when nothing is new.

A generated folder of 100,000 small images is the ingest source of a tiny-budget project; after
one full `dvc repro`, a no-op `dvc status`, `dvc repro` and `catdog status` are timed (each
must stay within 10 s on this machine: the source stage lists the folder and hashes nothing).
"""

from __future__ import annotations

import io
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.workspace import BIN, TINY_BUDGET, copy_project, set_params, tool_env


def small_images(folder: Path, count: int) -> Path:
    """`count` distinct 16x16 PNGs in cat/ and dog/: 200 pictures, each file made unique by trailing
    bytes (decoders ignore what follows IEND), so writing them is quick."""
    if folder.exists() and sum(1 for _ in folder.rglob("*.png")) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    pictures = []
    for _ in range(200):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(buffer, "PNG")
        pictures.append(buffer.getvalue())
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
    for i in range(count):
        label = "cat" if i % 2 else "dog"
        (folder / label / f"{i:06d}.png").write_bytes(pictures[i % len(pictures)] + i.to_bytes(8, "big"))
    return folder


def _seconds(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, cwd=cwd, env=tool_env(), check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out


def bench_noop_on_big_folder(work: Path, count: int, runs: int = 3) -> dict:
    photos = small_images(work / f"small-images-{count}", count)
    project = work / "big-folder"
    shutil.rmtree(project, ignore_errors=True)
    copy_project(project)
    set_params(project, TINY_BUDGET)
    set_params(project, {"ingest": {"source": str(photos)}, "validate": {"min_side": 8}})
    first, _ = _seconds([str(BIN / "dvc"), "repro", "-q"], project)
    status, repro, plain = [], [], []
    for _ in range(runs):
        seconds, _ = _seconds([str(BIN / "dvc"), "status"], project)
        status.append(seconds)
        seconds, out = _seconds([str(BIN / "dvc"), "repro"], project)
        assert "Running stage 'ingest'" not in out, "a no-op run must not ingest again"
        repro.append(seconds)
        seconds, out = _seconds([str(BIN / "catdog"), "status"], project)
        assert "unchanged since the last run" in out
        plain.append(seconds)
    return {"unit": "s", "files": count, "first_full_repro": first,
            "dvc_status": statistics.median(status), "dvc_repro": statistics.median(repro),
            "catdog_status": statistics.median(plain), "samples": {"dvc_status": status, "dvc_repro": repro,
                                                                   "catdog_status": plain},
            "target": "each <= 10 s"}
