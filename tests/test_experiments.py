"""Small grids through DVC's own experiment queue, as the README shows them: the queue runs, the
readable view of `dvc exp show` holds the columns that matter, and a queued experiment (a temporary
copy without the registry) says plainly that it was not judged against the production model."""

import json
import time

import pytest

from tests.conftest import make_project, run

pytestmark = pytest.mark.slow

# The README's view: the experiment, the two params of the grid and the test accuracy.
READABLE = ["--drop", ".*", "--keep", r"Experiment|train\.learning_rate|.*evaluate/metrics.json:accuracy$"]


def test_a_queued_grid_runs_and_says_it_was_not_judged_against_production(tmp_path):
    project = make_project(tmp_path / "project", git=True)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "tiny project"], project)
    run(["dvc", "repro"], project)  # production v0001 in the workspace's registry
    run(["dvc", "exp", "run", "--queue", "-S", "train.learning_rate=0.0001,0.01"], project)
    run(["dvc", "queue", "start", "--jobs", "1"], project)  # DVC's queue: one experiment at a time
    deadline = time.time() + 600
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    experiments = [e for commit in shown for e in (commit.get("experiments") or [])]
    assert len(experiments) == 2, shown
    for experiment in experiments:
        data = experiment["revs"][0]["data"]
        register = data["metrics"]["data/metrics/register.json"]["data"]
        assert "NOT compared with the real production model" in register["reason"]
    sort = ["--sort-by", "data/metrics/evaluate/metrics.json:accuracy", "--sort-order", "desc"]
    table = run(["dvc", "exp", "show", "--no-pager", "--csv", *sort, *READABLE], project).stdout
    header = table.splitlines()[0].split(",")
    assert sorted(header) == sorted(
        ["Experiment", "data/metrics/evaluate/metrics.json:accuracy", "train.learning_rate"]
    )
    rates = [row.split(",")[header.index("train.learning_rate")] for row in table.splitlines()[1:] if row[0] != ","]
    assert sorted(rates) == ["0.0001", "0.01"], table


def test_sweep_apply_exp_runs_the_winner_as_a_named_experiment(tmp_path):
    from tests.conftest import BIN, set_params

    project = make_project(tmp_path / "project", git=True)
    sweep = {"space": {"train.learning_rate": [0.001], "train.batch_size": [8]}, "max_epochs": 1, "confirm_seeds": 0}
    set_params(project, {"sweep": sweep})
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "tiny project"], project)
    run([str(BIN / "catdog"), "sweep", "--quiet", "--name", "tiny"], project)
    run([str(BIN / "catdog"), "sweep", "apply", "tiny", "--exp"], project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    names = [e["name"] for commit in shown for e in (commit.get("experiments") or [])]
    assert names == ["sweep-tiny"], names
