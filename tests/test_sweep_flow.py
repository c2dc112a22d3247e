"""Flow `sweep` on a real (temporary) Prefect server with its trials on a local Dask cluster of two
workers: the same study, leaderboard and plots as `catdog sweep`, published as artifacts."""

import pytest

from tests.conftest import make_project, set_params, write_images
from tests.test_sweep import SWEEP, study

pytest.importorskip("prefect_dask")
from flows.sweep import sweep  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_the_sweep_flow_runs_its_trials_on_two_dask_workers(tmp_path):
    project = make_project(tmp_path / "project")
    write_images(project / "photos", per_class=30)
    set_params(
        project,
        {
            "ingest": {"source": "photos", "max_per_class": None},
            "train": {"center_inputs": True, "batch_size": 8},
            "sweep": {**SWEEP, "confirm_seeds": 0},
        },
    )
    text = sweep(name="flow", jobs=2, project_dir=str(project))
    assert "winner: learning_rate=0.0001 batch_size=8" in text
    trials = study(project, "flow").get_trials()
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE"]
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # one trial on each Dask worker's process, at the same time
    assert (project / "data/sweeps/flow/plots/learning_curves.png").exists()

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = {a.key for a in client.read_artifacts()}
    assert {"catdog-sweep", "catdog-sweep-leaderboard", "catdog-sweep-plots"} <= artifacts
