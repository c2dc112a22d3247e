"""The real `dvc repro` on a temporary copy of the project, tiny budget."""

import json

import pandas as pd
import pytest

from catdog.core.live import read_history  # noqa: E402
from tests.conftest import make_project, run, set_params, stages_run, write_images

ALL_STAGES = ["source", "ingest", "validate", "testset", "preprocess", "train", "evaluate", "register"]
# `source` lists the source on every run (always_changed); the stages after it run only on a change.
pytestmark = pytest.mark.slow


def test_repro_produces_every_output_then_skips_then_reruns_only_downstream(tmp_path):
    project = make_project(tmp_path / "project")
    first = run(["dvc", "repro"], project)
    assert stages_run(first.stdout) == ALL_STAGES

    data = project / "data"
    manifest = pd.read_csv(data / "ingested/manifest.csv")
    assert manifest["label"].value_counts().to_dict() == {"cat": 20, "dog": 20}
    assert (data / "validated/accepted.csv").exists() and (data / "validated/rejected.csv").exists()
    assert (data / "validated/data_docs/index.html").exists()
    meta = json.loads((data / "preprocessed/meta.json").read_text())
    assert (
        meta["image_size"] == 32
        and sum(meta["counts"].values()) == json.loads((data / "metrics/validate.json").read_text())["accepted"]
    )
    assert (data / "model/model.keras").exists()
    history = read_history(data / "metrics/train")
    assert history.columns.tolist() == [
        "epoch",
        "image_size",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
    ]
    assert len(history) == 1
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)  # DVC reads DVCLive's files
    files = next(iter(shown.values()))["data"]
    assert files["data/metrics/train/metrics.json"]["data"]["eval"]["accuracy"] == history["val_accuracy"].iloc[-1]
    assert "accuracy" in files["data/metrics/evaluate/metrics.json"]["data"]
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    assert {"training loss", "training accuracy"} <= set(plots["data"]), sorted(plots["data"])  # from DVCLive
    metrics = json.loads((data / "metrics/evaluate/metrics.json").read_text())
    for key in [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "loss",
        "confusion",
        "ece",
        "accuracy_cat",
        "accuracy_dog",
    ]:
        assert key in metrics
    confusion = pd.read_csv(data / "metrics/confusion.csv")
    assert set(confusion.columns) >= {"actual", "predicted"} and len(confusion) == metrics["test_images"]
    for png in ["training_curves", "confusion", "roc", "misclassified"]:
        assert (data / f"plots/{png}.png").stat().st_size > 1000
    decision = json.loads((data / "metrics/register.json").read_text())
    assert decision["version"] == "v0001" and decision["production"]
    assert (data / "registry/versions/v0001/model.keras").exists()

    second = run(["dvc", "repro"], project)
    assert stages_run(second.stdout) == ["source"]
    assert second.stdout.count("didn't change, skipping") == len(ALL_STAGES) - 1

    set_params(project, {"train": {"learning_rate": 0.002}})
    third = run(["dvc", "repro"], project)
    assert stages_run(third.stdout) == ["source", "train", "evaluate", "register"]

    listed = json.loads(run(["catdog", "models", "list", "--json"], project).stdout)
    assert [m["version"] for m in listed] == ["v0001", "v0002"]
    views = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    for view in ["training loss", "training accuracy", "confusion matrix (test)", "ROC curve (test)"]:
        assert views[view][0]["type"] == "vega", view
    assert any(name.endswith("misclassified.png") for name in views)

    set_params(project, {"ingest": {"source": str(write_images(tmp_path / "photos", per_class=12))}})
    fourth = run(["dvc", "repro"], project)
    assert stages_run(fourth.stdout) == [stage for stage in ALL_STAGES if stage != "testset"]  # no test set here

    predicted = json.loads(
        run(
            ["catdog", "predict", "--json", str(tmp_path / "photos/cat/0.jpg"), str(tmp_path / "photos/dog/0.jpg")],
            project,
        ).stdout
    )
    assert [p["label"] in ("cat", "dog") for p in predicted] == [True, True]


def test_bad_params_stop_the_pipeline_before_any_work(project):
    set_params(project, {"train": {"epochs": -1}})
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    assert "train.epochs: -1 is out of range (fix: use a value between 1 and 10000)" in result.stderr + result.stdout
    assert not (project / "data/ingested").exists()


def test_works_in_a_git_repository_too(tmp_path):
    project = make_project(tmp_path / "project", git=True)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "project"], project)
    run(["dvc", "repro"], project)
    card = json.loads(run(["catdog", "models", "show", "production", "--json"], project).stdout)
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert card["code_revision"].startswith(head)
    assert card["params"]["train"]["learning_rate"] == 0.001


def test_make_run_works_in_a_plain_folder_without_git(tmp_path):
    """A downloaded copy (no .git, .dvc/ as committed): `make run` sets core.no_scm and runs."""
    import shutil

    from tests.conftest import REPO, TINY

    plain = tmp_path / "download"
    plain.mkdir()
    for name in ["Makefile", "dvc.yaml", "params.yaml", "pyproject.toml", "requirements.lock", ".gitignore"]:
        shutil.copy2(REPO / name, plain / name)
    for name in ["catdog", "tasks", "flows", ".dvc"]:
        shutil.copytree(REPO / name, plain / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    (plain / ".venv").symlink_to(REPO / ".venv")  # the environment `make setup` built
    set_params(plain, TINY)
    # -o: never reinstall from the copy, which would point the shared .venv's editable install here.
    result = run(["make", "-o", ".venv/.installed", "run"], plain)
    assert "=== catdog: pipeline finished ===" in result.stdout
    assert "no_scm = true" in (plain / ".dvc/config").read_text()
    assert (plain / "data/registry/versions/v0001/model.keras").exists()
