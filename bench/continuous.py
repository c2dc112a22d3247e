"""The continuous-training part of `make bench`: what a nightly run costs when nothing is new.

A generated folder of 100,000 small images is the ingest source of a tiny-budget project; after
one full `dvc repro`, a no-op `dvc status`, `dvc repro` and `catdog status` are timed (each
must stay within 10 s on this machine: the source stage lists the folder and hashes nothing).
The first three stages are timed from scratch and after 1% new photos, on the shared photos and
(`bench/run.py --only incremental-at-scale`) on 20,000 generated photo-like images.
"""

from __future__ import annotations

import io
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.devtools.workspace import (
    BIN,
    TINY_BUDGET,
    copy_project,
    set_params,
    tool_env,
)


def small_images(folder: Path, count: int) -> Path:
    """`count` distinct 16x16 PNGs in cat/ and dog/ (see `_unique_copies`)."""
    rng = np.random.default_rng(0)
    return _unique_copies(
        folder, count, "png", lambda: Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L")
    )


def photo_like_images(folder: Path, count: int) -> Path:
    """`count` distinct photo-sized JPEGs in cat/ and dog/: 500x375 colour fields with noise,
    about 50 KB each like the Kaggle photos, so decoding them costs what decoding photos does."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500] / 100.0

    def picture():
        fields = [
            np.sin(x * rng.uniform(0.2, 2) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(0.2, 2)) for _ in range(3)
        ]
        pixels = np.stack(fields, -1) * 90 + 128 + rng.normal(0, 12, (375, 500, 3))
        return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))

    return _unique_copies(folder, count, "jpg", picture, quality=85)


def _unique_copies(folder: Path, count: int, suffix: str, picture, **save) -> Path:
    """200 pictures, each file made unique by trailing bytes (decoders ignore what follows the
    image's end), so writing many is quick; kept when the folder already holds `count`."""
    if folder.exists() and sum(1 for _ in folder.rglob(f"*.{suffix}")) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    pictures = []
    for _ in range(200):
        buffer = io.BytesIO()
        picture().save(buffer, "PNG" if suffix == "png" else "JPEG", **save)
        pictures.append(buffer.getvalue())
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
    for i in range(count):
        label = "cat" if i % 2 else "dog"
        (folder / label / f"{i:06d}.{suffix}").write_bytes(pictures[i % len(pictures)] + i.to_bytes(8, "big"))
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
    return {
        "unit": "s",
        "files": count,
        "first_full_repro": first,
        "dvc_status": statistics.median(status),
        "dvc_repro": statistics.median(repro),
        "catdog_status": statistics.median(plain),
        "samples": {"dvc_status": status, "dvc_repro": repro, "catdog_status": plain},
        "target": "each <= 10 s",
    }


# ---------------------------------------------------------------- incremental vs full


STAGE_OUTPUTS = ["data/ingested", "data/validated", "data/preprocessed"]  # DVC removes these before each run
STAGE_DATA = ["data/source", "data/cache", *STAGE_OUTPUTS]


def stage_work_seconds(project: Path) -> dict:
    """source, ingest, validate and preprocess run in this process (imports done first, so only the
    stages' own work is timed), as `dvc repro` would run them once it has removed their previous
    outputs; seconds per stage."""
    import great_expectations  # noqa: F401  (imported before the clock starts)

    from catdog.core.config import load_params
    from catdog.core.paths import project as project_paths
    from catdog.data import intake, sources, validation
    from catdog.data.reuse import FileStore
    from catdog.stages import preprocess, source

    params, paths = load_params(project / "params.yaml"), project_paths(project)
    seconds = {}

    def timed(name, work):
        start = time.perf_counter()
        work()
        seconds[name] = time.perf_counter() - start

    timed(
        "source", lambda: source.run(params.ingest, params.source_path(paths.root), paths.source_manifest, paths.cache)
    )
    timed(
        "ingest",
        lambda: intake.ingest(
            params.ingest,
            paths.ingested,
            params.source_path(paths.root),
            False,
            sources.read_manifest(paths.source_manifest),
            sources.hashed_files(paths.cache),
            FileStore(paths.cache / "ingested-files"),
        ),
    )
    timed(
        "validate",
        lambda: validation.validate(
            params.validate, paths.ingested, paths.validated, paths.metrics / "validate.json", False, paths.cache
        ),
    )
    timed(
        "preprocess",
        lambda: preprocess.run(
            params.preprocess, paths.validated, paths.ingested, paths.preprocessed, False, paths.cache
        ),
    )
    return seconds


def bench_incremental(work: Path, photo_dir: Path, added: int = 20, pairs: int = 2) -> dict:
    """The first three stages (and source) on all photos from scratch vs after `added` new photos,
    in alternating pairs: in-process stage work, and the whole `dvc repro preprocess`."""
    project = work / "incremental"
    shutil.rmtree(project, ignore_errors=True)
    copy_project(project)
    set_params(project, {"ingest": {"source": str(photo_dir), "max_per_class": None}, "validate": {"min_side": 32}})
    every = sorted(photo_dir.rglob("*.jpg"))
    newest = every[:: len(every) // added][:added]
    aside = work / "incremental-new"
    shutil.rmtree(aside, ignore_errors=True)

    def hold_back():
        for path in newest:
            target = aside / path.relative_to(photo_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)

    def add():
        for path in newest:
            (aside / path.relative_to(photo_dir)).rename(path)

    def work_seconds() -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--stage-work", str(project)],
            env=tool_env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    by_stage = {"full": [], "incremental": []}

    def run_seconds(measure: str, kind: str) -> float:
        if measure == "work":
            for folder in STAGE_OUTPUTS:  # as `dvc repro` does before it runs a stage (the data/cache stays)
                shutil.rmtree(project / folder, ignore_errors=True)
            by_stage[kind].append(work_seconds())
            return sum(by_stage[kind][-1].values())
        return _seconds([str(BIN / "dvc"), "repro", "-q", "--no-run-cache", "preprocess"], project)[0]

    rows = {"work": {"full": [], "incremental": []}, "dvc_repro": {"full": [], "incremental": []}}
    try:
        for _ in range(pairs):
            for measure in rows:
                for folder in STAGE_DATA:
                    shutil.rmtree(project / folder, ignore_errors=True)
                hold_back()
                rows[measure]["full"].append(run_seconds(measure, "full"))
                add()
                rows[measure]["incremental"].append(run_seconds(measure, "incremental"))
    finally:
        if aside.exists() and any(aside.rglob("*.jpg")):
            add()
    result = {"unit": "s", "photos": len(list(photo_dir.rglob("*.jpg"))), "added": added, "samples": rows}
    for measure, kinds in rows.items():
        full, incremental = statistics.median(kinds["full"]), statistics.median(kinds["incremental"])
        result[measure] = {"full": full, "incremental": incremental, "speedup": full / incremental}
    result["work"]["by_stage"] = {
        kind: {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}
        for kind, runs in by_stage.items()
    }
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--stage-work"]:
    print(json.dumps(stage_work_seconds(Path(sys.argv[2]))))
