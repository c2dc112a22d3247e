"""`catdog sweep` on a tiny, learnable data set: real Optuna studies (journal file), real worker
processes, real `dvc repro`; pruning, confirmation seeds, kill and resume, two sweeps on one study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import BIN, env, make_project, run, set_params, write_images

TRIAL_PROCESS = "catdog.tuning.worker"
# The trials: one learns at once (centred inputs, a small rate), one never does (a rate of 1.0).
SPACE = {"train.learning_rate": [0.0001, 1.0], "train.batch_size": [8]}
SWEEP = {"space": SPACE, "max_epochs": 3, "seed": 1, "pruner": "none", "confirm_top": 2, "confirm_seeds": 1}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("sweep") / "project")
    write_images(project / "photos", per_class=30)
    set_params(
        project,
        {
            "ingest": {"source": "photos", "max_per_class": None},
            "train": {"center_inputs": True, "batch_size": 8},
            "sweep": SWEEP,
        },
    )
    return project


def sweep(project: Path, *args: str, check: bool = True, extra_env: dict | None = None):
    command = [str(BIN / "catdog"), "sweep", "--quiet", *args]
    done = subprocess.run(command, cwd=project, env={**env(), **(extra_env or {})}, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"catdog sweep {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def study(project: Path, name: str, phase: str = "") -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(project / f"data/sweeps/{name}/journal.log")))
    return optuna.load_study(study_name=f"{name}-{phase}" if phase else name, storage=storage)


def opened_files_hook(folder: Path) -> dict:
    """A sitecustomize that logs every file a sweep worker process opens (Python's audit hook)."""
    (folder / "sitecustomize.py").write_text(
        "import sys, os\n"
        f"if {TRIAL_PROCESS!r} in sys.orig_argv:\n"
        f"    log = open({str(folder / 'opened.log')!r}, 'a', buffering=1)\n"
        "    def hook(event, args):\n"
        "        if event == 'open' and isinstance(args[0], (str, bytes, os.PathLike)):\n"
        "            log.write(os.fsdecode(os.path.abspath(args[0])) + '\\n')\n"
        "    sys.addaudithook(hook)\n"
    )
    return {"PYTHONPATH": str(folder)}


def test_a_sweep_on_two_workers_confirms_its_best_setting_and_never_reads_test_photos(project, tmp_path):
    done = sweep(project, "--name", "main", "--jobs", "2", extra_env=opened_files_hook(tmp_path))
    assert "winner: learning_rate=0.0001 batch_size=8" in done.stdout, done.stdout
    folder = project / "data/sweeps/main"
    board = pd.read_csv(folder / "leaderboard.csv")
    assert len(board) == 2 and board.loc[0, "learning_rate"] == 0.0001 and board.loc[0, "val_accuracy"] == 1.0
    for trial in ("0000", "0001", "confirm-0000", "confirm-0001"):  # each trial's curves, as DVCLive writes them
        curve = pd.read_csv(folder / f"trials/{trial}/plots/metrics/eval/accuracy.tsv", sep="\t")
        assert curve["step"].iloc[0] == 1
        assert json.loads((folder / f"trials/{trial}/metrics.json").read_text())["eval"]["accuracy"] >= 0
    confirmed = json.loads((folder / "confirmed.json").read_text())
    assert [len(c["values"]) for c in confirmed] == [2, 2]  # both settings, each over two seeds
    assert confirmed[0]["setting"]["train.learning_rate"] == 0.0001
    for plot in ("optimization_history", "parallel_coordinate", "param_importances", "learning_curves"):
        assert (folder / f"plots/{plot}.png").stat().st_size > 1000, plot
    opened = (tmp_path / "opened.log").read_text().splitlines()
    assert any("/data/preprocessed/train/" in path for path in opened)  # the hook saw the trials read shards
    test_reads = [p for p in opened if "/data/preprocessed/test" in p or "/data/testset" in p]
    assert test_reads == [], test_reads[:5]
    assert "complete" in sweep(project, "show", "main").stdout


def test_apply_writes_the_winner_and_dvc_repro_trains_it(project):
    done = sweep(project, "apply", "main")
    assert "train.learning_rate: 0.001 -> 0.0001" in done.stdout, done.stdout
    params = yaml.safe_load((project / "params.yaml").read_text())["train"]
    assert params["learning_rate"] == 0.0001 and 1 <= params["epochs"] <= 3
    repro = run(["dvc", "repro"], project)
    assert "Running stage 'train'" in repro.stdout
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["learning_rate"] == 0.0001


def _epochs_trained(project: Path, name: str) -> int:
    return int(pd.read_csv(project / f"data/sweeps/{name}/leaderboard.csv")["epochs"].sum())


def test_a_hopeless_setting_is_pruned_and_the_sweep_trains_fewer_epochs(project):
    set_params(project, {"sweep": {**SWEEP, "confirm_seeds": 0, "pruner": "successive_halving", "reduction_factor": 2}})
    sweep(project, "--name", "pruned")
    trials = study(project, "pruned").get_trials()
    hopeless = next(t for t in trials if t.params["train.learning_rate"] == 1.0)
    assert hopeless.state == optuna.trial.TrialState.PRUNED and hopeless.user_attrs["pruned_at_epoch"] == 1
    assert "pruned at epoch 1" in sweep(project, "show", "pruned").stdout
    set_params(project, {"sweep": {**SWEEP, "confirm_seeds": 0, "pruner": "none"}})
    sweep(project, "--name", "unpruned")
    assert _epochs_trained(project, "pruned") < _epochs_trained(project, "unpruned") == 6


def test_a_bad_space_stops_before_any_work(project):
    set_params(project, {"sweep": {**SWEEP, "space": {"train.learning_rate": [0.001, 7.0]}}})
    done = sweep(project, "--name", "bad", check=False)
    assert done.returncode == 2
    assert "sweep.space.train.learning_rate[1]: 7.0 is out of range" in done.stderr
    assert not (project / "data/sweeps/bad").exists()
    set_params(project, {"sweep": SWEEP})


def test_a_killed_sweep_resumes_without_redoing_finished_trials(project):
    set_params(project, {"sweep": {**SWEEP, "confirm_seeds": 0}})
    command = [str(BIN / "catdog"), "sweep", "--quiet", "--name", "killed"]
    process = subprocess.Popen(command, cwd=project, env=env(), start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it while its second trial runs
        time.sleep(0.5)
        journal = project / "data/sweeps/killed/journal.log"
        if journal.exists():
            states = [t.state.name for t in study(project, "killed").get_trials()]
            if states == ["COMPLETE", "RUNNING"]:
                break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = study(project, "killed").get_trials()[0]
    sweep(project, "--name", "killed")
    trials = study(project, "killed").get_trials()
    assert trials[0].datetime_complete == first.datetime_complete  # the finished trial was kept, not redone
    assert trials[1].state.name == "FAIL" and trials[2].user_attrs["retry_of"] == 1
    assert trials[2].state.name == "COMPLETE" and trials[2].params == trials[1].params
    assert len(trials) == 3
    assert "its worker was killed; run again as trial 2" in sweep(project, "show", "killed").stdout


def test_two_sweep_processes_on_one_study_share_the_trials(project):
    set_params(project, {"sweep": {**SWEEP, "confirm_seeds": 0}})
    command = [str(BIN / "catdog"), "sweep", "--quiet", "--name", "shared"]
    processes = [subprocess.Popen(command, cwd=project, env=env(), stdout=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.wait(timeout=600) for p in processes] == [0, 0]
    trials = study(project, "shared").get_trials()
    settings = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(trials) == 2 and len(set(settings)) == 2 and {t.state.name for t in trials} == {"COMPLETE"}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


def test_a_database_url_holds_the_study(project, tmp_path):
    set_params(project, {"sweep": {**SWEEP, "confirm_seeds": 0, "space": {"train.learning_rate": [0.0001]}}})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"  # PostgreSQL for several machines; SQLite here
    sweep(project, "--name", "db", "--storage", url)
    trials = optuna.load_study(study_name="db", storage=url).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"]
    assert not (project / "data/sweeps/db/journal.log").exists()
    assert "complete" in sweep(project, "show", "db", "--storage", url).stdout
