"""Scale-out on existing engines: tf.distribute strategies and DVC remote storage."""

import json

import pytest

from tests.conftest import make_project, run, set_params, stages_run, write_images

pytestmark = pytest.mark.slow


def _accuracy(project) -> float:
    return json.loads((project / "data/metrics/evaluate/metrics.json").read_text())["accuracy"]


def test_mirrored_strategy_trains_the_same_model_as_well(tmp_path):
    photos = write_images(tmp_path / "photos", per_class=30)
    results = {}
    for strategy in ("default", "mirrored"):
        project = make_project(tmp_path / strategy)
        set_params(
            project,
            {"ingest": {"source": str(photos), "max_per_class": None}, "train": {"epochs": 14, "distribute": strategy}},
        )
        output = run(["dvc", "repro"], project).stdout
        assert f"{2 if strategy == 'mirrored' else 1} replica(s)" in output
        parameters = json.loads((project / "data/model/train.json").read_text())["parameters"]
        results[strategy] = (_accuracy(project), parameters)
    (default_accuracy, default_parameters), (mirrored_accuracy, mirrored_parameters) = results.values()
    assert mirrored_parameters == default_parameters  # the same model
    assert default_accuracy >= 0.8 and mirrored_accuracy >= 0.8, results


def test_dvc_remote_round_trip(tmp_path):
    project = make_project(tmp_path / "project", git=True)
    remote = tmp_path / "remote-storage"
    run(["dvc", "remote", "add", "-d", "storage", str(remote)], project)
    run(["dvc", "repro"], project)
    run(["dvc", "push"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "trained"], project)
    assert any(remote.rglob("*"))

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data/model/model.keras").exists()
    run(["dvc", "pull"], clone)
    model = (clone / "data/model/model.keras").read_bytes()
    assert model == (project / "data/model/model.keras").read_bytes()
    assert (clone / "data/preprocessed/meta.json").exists()
    # Up to date but for the source stage, which lists the source on every run by design.
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {"source": ["always changed"]}
    assert "unchanged since the last run" in run(["catdog", "status"], clone).stdout
    assert stages_run(run(["dvc", "repro"], clone).stdout) == ["source"]
