"""Shared fixtures: a temporary copy of the project that runs the real `catdog` and `dvc`."""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from catdog.core.config import ValidateParams
from catdog.devtools.workspace import (  # noqa: F401 (re-exported to the tests)
    BIN,
    REPO,
    SHARED_ZIP,
    TINY_BUDGET,
    copy_project,
    set_params,
)
from catdog.devtools.workspace import tool_env as env

TINY = TINY_BUDGET

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Prefect reads its settings at import: a private home per test session, before any import.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="catdog-prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILE", None)


def run(args: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def make_project(target: Path, *, git: bool = False, tiny: bool = True) -> Path:
    copy_project(target, git=git)
    if tiny:
        set_params(target, TINY)
    return target


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (a real `prefect server`, SQLite) for all flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of the project (no git, `dvc init --no-scm`) with tiny-budget params."""
    return make_project(tmp_path / "project")


def image_bytes(kind: str = "dog", size=(64, 48), fmt: str = "PNG", mode: str = "RGB", seed: int = 0) -> bytes:
    """A synthetic picture; 'cat' and 'dog' differ enough (bright vs dark blob) to be learnable."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    blob = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) < (min(size) / 3) ** 2
    base = rng.integers(0, 60, (height, width)).astype(np.uint8)
    base[blob] = 220 if kind == "dog" else 110
    image = Image.fromarray(base, "L").convert(mode) if mode != "L" else Image.fromarray(base, "L")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def inverted(jpeg: bytes) -> bytes:
    """The same picture in negative: far brighter than image_bytes' dark pictures."""
    buffer = io.BytesIO()
    ImageOps.invert(Image.open(io.BytesIO(jpeg)).convert("RGB")).save(buffer, "JPEG")
    return buffer.getvalue()


def write_images(folder: Path, per_class: int = 12, layout: str = "folders", fmt: str = "JPEG") -> Path:
    """Generated cat/dog images in class folders (`cat/1.jpg`) or Kaggle's flat layout (`cat.1.jpg`)."""
    ext = {"JPEG": "jpg", "PNG": "png"}[fmt]
    for label in ("cat", "dog"):
        for i in range(per_class):
            name = f"{label}/{i}.{ext}" if layout == "folders" else f"{label}.{i}.{ext}"
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes(label, (40 + i, 36 + 2 * i), fmt, seed=i + (1000 if label == "dog" else 0)))
    return folder


def stages_run(dvc_output: str) -> list[str]:
    """Stage names that `dvc repro` ran (not skipped), from its output."""
    return [line.split("'")[1] for line in dvc_output.splitlines() if line.startswith("Running stage '")]


MAX_PIXELS = ValidateParams().max_pixels  # validate.max_pixels by default, for calls outside a project
