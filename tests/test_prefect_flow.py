"""Flow `train` on a real (temporary) Prefect server via prefect_test_harness, tiny budget."""

import datetime as dt
import json

import numpy as np
import pytest
import yaml

from tests.conftest import make_project, set_params, write_images

prefect = pytest.importorskip("prefect")
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import (  # noqa: E402
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

from catdog.core.config import ParamsError  # noqa: E402
from catdog.monitoring.prediction_log import PredictionLog, utc_now  # noqa: E402
from flows.train import train  # noqa: E402
from tests.test_monitor import records  # noqa: E402

STAGES = ["source", "ingest", "validate", "testset", "preprocess", "train", "evaluate", "register"]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _task_runs(flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_flow_runs_every_stage_then_skips_them_and_publishes_artifacts(tmp_path):
    project = make_project(tmp_path / "project")
    served = records("v0001", utc_now() - dt.timedelta(hours=1), np.array([0.55, 0.9, 0.1]), np.full(3, 100.0), "s")
    PredictionLog(project / "data" / "serving").append(served)  # what catdog serve would have logged
    first = train(overrides={"train.seed": 7}, project_dir=str(project))
    assert [s["stage"] for s in first["stages"]] == STAGES
    assert all(s["ran"] for s in first["stages"])
    assert "data/model" in first["stages"][STAGES.index("train")]["outputs"]
    assert first["params_changed"] == {"train.seed": [42, 7]}
    # the override is recorded where DVC sees it, comments kept
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["seed"] == 7
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["seed"] == 7

    second = train(project_dir=str(project))
    # the source is listed on every run; nothing changed, so nothing after it ran
    assert [s["ran"] for s in second["stages"]] == [True] + [False] * 7

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(
                    any_=["catdog-run-summary", "catdog-test-metrics", "catdog-data-docs", "catdog-plots"]
                )
            )
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {"catdog-run-summary", "catdog-test-metrics", "catdog-data-docs", "catdog-plots"}
    accuracy = json.loads((project / "data/metrics/evaluate/metrics.json").read_text())["accuracy"]
    summary = by_key["catdog-run-summary"].data
    assert "is **production**" in summary and f"| accuracy | {accuracy:.4f} |" in summary
    assert "## Serving (the last 24 hours)" in summary and ": 3 images answered." in summary
    assert "- v0001: 3 images, 33.3% low-confidence" in summary and "monitor.png" in summary
    assert "index.html" in by_key["catdog-data-docs"].data


def test_bad_override_key_fails_before_any_stage(tmp_path):
    project = make_project(tmp_path / "project")
    with pytest.raises(ParamsError, match="^train.epochz: unknown key"):
        train(overrides={"train.epochz": 3}, project_dir=str(project))
    with pytest.raises(ParamsError, match="^train.epochs: -2 is out of range"):
        train(overrides={"train.epochs": -2}, project_dir=str(project))
    assert not (project / "data/ingested").exists()


def test_transient_failure_is_retried(tmp_path):
    project = make_project(tmp_path / "project")
    dvc_yaml = (project / "dvc.yaml").read_text()
    # The first attempt of ingest is killed as an OOM killer would; the retry must succeed.
    killed_once = (
        "sh -c 'if [ ! -e .killed-once ]; then touch .killed-once; kill -9 $$; fi; python -m catdog.stages.ingest'"
    )
    (project / "dvc.yaml").write_text(dvc_yaml.replace("cmd: python -m catdog.stages.ingest", f"cmd: {killed_once}", 1))
    set_params(project, {"validate": {"min_images": 10_000}})  # then a user error ends the run (no training)
    state = train(project_dir=str(project), return_state=True)
    task_runs = {t.name: t for t in _task_runs(state.state_details.flow_run_id)}
    assert task_runs["ingest"].run_count == 2 and task_runs["ingest"].state.is_completed()
    assert task_runs["validate"].run_count == 1 and "train" not in task_runs
    assert (project / ".killed-once").exists()


def test_validation_failure_is_not_retried_and_the_reason_is_logged(tmp_path, caplog):
    project = make_project(tmp_path / "project")
    photos = write_images(tmp_path / "photos", per_class=4)
    for i in range(6):
        (photos / f"cat/broken{i}.jpg").write_bytes(b"not a jpeg %d" % i)
    set_params(project, {"ingest": {"source": str(photos)}})
    state = train(project_dir=str(project), return_state=True)
    assert state.is_failed()
    validate_run = next(t for t in _task_runs(state.state_details.flow_run_id) if t.name == "validate")
    assert validate_run.run_count == 1
    assert "were rejected, over validate.max_rejected_share" in caplog.text
    assert "stage 'validate' failed" in caplog.text


def test_a_second_pipeline_run_in_the_workspace_waits_for_the_first(tmp_path):
    import threading
    import time

    from catdog.core.files import locked
    from catdog.core.paths import project as project_paths

    project = make_project(tmp_path / "project")
    outcome = {}
    with locked(project_paths(project).pipeline_lock):  # another run (say, train/nightly) holds the workspace
        run = threading.Thread(target=lambda: outcome.update(train(project_dir=str(project))))
        run.start()
        time.sleep(8)
        assert run.is_alive() and not (project / "data/source/manifest.csv").exists()  # waiting, no stage ran
    run.join(timeout=600)
    assert [s["stage"] for s in outcome["stages"]] == STAGES
