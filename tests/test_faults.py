"""Killed processes and tampered files: resume, atomic outputs, a consistent registry."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from catdog.core.files import read_json, sha256_file
from catdog.core.live import read_history  # noqa: E402
from catdog.registry.gate import Verdict
from catdog.registry.store import Registry, RegistryError
from tests.conftest import BIN, env, image_bytes, make_project, run, set_params

pytestmark = pytest.mark.slow


def _kill_when(process: subprocess.Popen, condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the process finished before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting to kill"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _checkpointed_epochs(project: Path) -> int:
    from catdog.model.callbacks import EpochCheckpoint

    folders = list((project / "data/checkpoints").glob("*"))
    return EpochCheckpoint.latest(folders[0])[0] if folders else 0


def test_killed_training_resumes_from_the_last_completed_epoch(tmp_path):
    project = make_project(tmp_path / "project")
    set_params(project, {"train": {"epochs": 6, "batch_size": 2}, "preprocess": {"image_size": 48}})
    run(["dvc", "repro", "preprocess"], project)
    process = subprocess.Popen(
        [str(BIN / "catdog"), "train"], cwd=project, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _kill_when(process, lambda: _checkpointed_epochs(project) >= 2)
    done = _checkpointed_epochs(project)
    assert not (project / "data/model/model.keras").exists()

    resumed = run(["catdog", "train"], project)
    assert f"resuming after epoch {done}" in resumed.stdout
    history = read_history(project / "data/metrics/train")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    trained = read_json(project / "data/model/train.json")
    assert trained["resumed_from_epoch"] == done and trained["epochs"] == 6
    assert not list((project / "data/checkpoints").glob("*"))  # cleaned up after success


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_progressive_resizing_resumes_across_phases_and_ends_at_full_size(tmp_path, precision):
    project = make_project(tmp_path / "project")
    set_params(
        project,
        {
            "preprocess": {"image_size": 64},
            "train": {
                "epochs": 2,
                "batch_size": 4,
                "warmup_sizes": [16, 32],
                "warmup_epochs": [2, 1],
                "precision": precision,
                "flatten_dense_lr_scale": 0.5,
            },
        },
    )
    run(["dvc", "repro", "preprocess"], project)
    process = subprocess.Popen(
        [str(BIN / "catdog"), "train"], cwd=project, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _kill_when(process, lambda: _checkpointed_epochs(project) >= 1)  # in or just after the 16 px phase
    done = _checkpointed_epochs(project)

    resumed = run(["catdog", "train"], project)
    assert f"resuming after epoch {done}" in resumed.stdout
    assert "carried the weights from 32 to 64 pixels" in resumed.stdout
    history = read_history(project / "data/metrics/train")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert history["image_size"].tolist() == [16, 16, 32, 64, 64]
    assert history["val_accuracy"].notna().all()
    assert f"train: precision {precision} ({precision} as asked)" in resumed.stdout
    assert read_json(project / "data/model/train.json")["precision"] == precision
    from catdog.model.network import load_model, precision_of

    assert precision_of(load_model(project / "data/model/model.keras")) == precision
    from catdog.model.network import load_model

    model = load_model(project / "data/model/model.keras")
    assert model.input_shape == (None, 64, 64, 1)
    assert model.count_params() == 640 + 73_856 + 295_168 + (8 * 8 * 256 * 128 + 128) + 8_256 + 65  # spec at 64 px


def test_stale_checkpoints_do_not_affect_a_new_training(tmp_path):
    project = make_project(tmp_path / "project")
    run(["dvc", "repro", "preprocess"], project)
    stale = project / "data/checkpoints/0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "history.csv").write_text("epoch,loss\n0,0.1\n1,0.1\n2,0.1\n")
    result = run(["catdog", "train"], project)
    assert "resuming" not in result.stdout
    assert not stale.exists()
    assert read_json(project / "data/model/train.json")["resumed_from_epoch"] == 0


def test_a_killed_stage_never_leaves_a_half_written_output(tmp_path):
    project = make_project(tmp_path / "project")
    set_params(project, {"ingest": {"max_per_class": 200}, "preprocess": {"image_size": 128, "shard_size": 16}})
    run(["dvc", "repro", "validate"], project)
    out = project / "data/preprocessed"
    for delay in (0.5, 1.5, 3.0):
        process = subprocess.Popen(
            [str(BIN / "catdog"), "preprocess"],
            cwd=project,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if out.exists():  # then it is a complete result, never a partial one
            meta = read_json(out / "meta.json")
            assert sum(len(pd.read_csv(out / s / "index.csv")) for s in ("train", "val", "test")) == sum(
                meta["counts"].values()
            )
    run(["catdog", "preprocess"], project)
    assert read_json(out / "meta.json")["image_size"] == 128
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".preprocessed")]


REGISTER_SNIPPET = """
import sys
from pathlib import Path
from catdog.registry.gate import Verdict
from catdog.registry.store import Registry
registry = Registry(Path(sys.argv[1]))
registry.register(Path(sys.argv[2]), {"metrics": {"accuracy": float(sys.argv[3])}, "params": {},
                  "data_fingerprint": "d", "code_revision": "c"}, Verdict(True, "better"),
                  compared_with=registry.state()["production"])
"""


def _check_consistent(registry: Registry) -> None:
    state = registry.state()
    versions = registry.versions()
    assert state["production"] is None or state["production"] in versions
    assert all(v in versions for v in state["history"])
    for version in versions:
        card = read_json(registry.versions_dir / version / "card.json")
        assert sha256_file(registry.versions_dir / version / "model.keras") == card["model_sha256"]


def test_registry_stays_consistent_when_killed_at_random_points(tmp_path):
    registry = Registry(tmp_path / "registry")
    rng = random.Random(7)
    models = []
    for i in range(6):
        model = tmp_path / f"model{i}.keras"
        model.write_bytes(os.urandom(30_000_000))  # big enough that copying takes a while
        models.append(model)
    for i, model in enumerate(models):
        process = subprocess.Popen(
            [sys.executable, "-c", REGISTER_SNIPPET, str(registry.root), str(model), str(0.6 + i / 100)], env=env()
        )
        time.sleep(rng.uniform(0.0, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
        _check_consistent(registry)
        # Running register again completes the job, whatever point it was killed at.
        subprocess.run(
            [sys.executable, "-c", REGISTER_SNIPPET, str(registry.root), str(model), str(0.6 + i / 100)],
            env=env(),
            check=True,
        )
        _check_consistent(registry)
        assert registry.state()["production"] == registry.versions()[-1]
    assert len(registry.versions()) == len(models)


def test_models_are_loaded_in_safe_mode_so_files_cannot_run_code(tmp_path):
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "lambda.keras"
    model.save(path)
    registry = Registry(tmp_path / "registry")
    registry.register(
        path,
        {"metrics": {"accuracy": 0.9}, "params": {}, "data_fingerprint": "d", "code_revision": "c"},
        Verdict(True, "test"),
        compared_with=None,
    )
    with pytest.raises(ValueError, match="safe_mode"):
        registry.load_model("production")


def test_predict_refuses_a_tampered_production_model(tmp_path):
    from catdog.model.network import build_model

    project = make_project(tmp_path / "project")
    build_model(image_size=32).save(tmp_path / "model.keras")
    Registry(project / "data/registry").register(
        tmp_path / "model.keras",
        {"metrics": {"accuracy": 0.9}, "params": {}, "data_fingerprint": "d", "code_revision": "c"},
        Verdict(True, "test"),
        compared_with=None,
    )
    model = project / "data/registry/versions/v0001/model.keras"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    image = tmp_path / "photo.png"
    image.write_bytes(image_bytes("dog"))
    result = run(["catdog", "predict", str(image)], project, check=False)
    assert result.returncode == 2
    assert "does not match its registered sha256" in result.stderr
    with pytest.raises(RegistryError):
        Registry(project / "data/registry").model_path("production")
    assert json.loads(run(["catdog", "models", "list", "--json"], project).stdout)[0]["version"] == "v0001"
