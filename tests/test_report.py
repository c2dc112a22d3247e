"""Reviewing a training change: catdog report, check-lock, dvc diffs, and the PR workflow."""

import json
import re
import shlex

import pytest
import yaml

from catdog.cli import build_parser
from tests.conftest import REPO, make_project, run, set_params


@pytest.mark.slow
def test_report_shows_what_a_params_change_did(tmp_path):
    project = make_project(tmp_path / "project", git=True)
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    base_accuracy = json.loads((project / "data/metrics/evaluate/metrics.json").read_text())["accuracy"]

    set_params(project, {"train": {"learning_rate": 0.0003, "epochs": 2}})
    run(["dvc", "repro"], project)
    new_accuracy = json.loads((project / "data/metrics/evaluate/metrics.json").read_text())["accuracy"]
    report = run(["catdog", "report", "--base", "HEAD"], project).stdout
    print(report)

    assert f"| accuracy | {base_accuracy:.4f} | {new_accuracy:.4f} | {new_accuracy - base_accuracy:+.4f}" in report
    assert "| `train.learning_rate` | 0.001 | 0.0003 |" in report and "| `train.epochs` | 1 | 2 |" in report
    assert re.search(r"\*\*Verdict: (better|worse|same)\*\*", report)
    assert "This change's model: **v0002**" in report
    assert "| on the same test images | accuracy | 95% interval |" in report and "| production v0001 |" in report
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (project / "data/report" / image).stat().st_size > 1000
    assert len(re.findall(r"!\[", report)) == 4 and "![why-misclassified]" in report

    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "--json"], project).stdout)
    params_diff = json.loads(run(["dvc", "params", "diff", "HEAD", "--json"], project).stdout)
    learning_rate = params_diff["params.yaml"]["train.learning_rate"]
    assert (learning_rate["old"], learning_rate["new"]) == (0.001, 0.0003)
    assert learning_rate["diff"] == pytest.approx(-0.0007)
    if base_accuracy != new_accuracy:
        assert metrics_diff["data/metrics/evaluate/metrics.json"]["accuracy"]["new"] == new_accuracy

    # Committed together, the metrics are current; in a fresh clone without the DVC cache the
    # review still works: check-lock passes and the report compares with the previous commit.
    run(["catdog", "check-lock"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "lower learning rate, two epochs"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data/model").exists()
    run(["catdog", "check-lock"], clone)
    in_clone = run(["catdog", "report", "--base", "HEAD~1"], clone).stdout
    assert f"{base_accuracy:.4f} | {new_accuracy:.4f}" in in_clone
    assert len(re.findall(r"!\[", in_clone)) == 3, "no model nor photos in the clone: no why-maps"

    # A params change without a rerun is caught.
    set_params(clone, {"train": {"learning_rate": 0.01}})
    stale = run(["catdog", "check-lock"], clone, check=False)
    assert stale.returncode == 1 and "train: params.yaml train modified" in stale.stderr


def test_report_needs_a_git_revision(tmp_path, project):
    result = run(["catdog", "report", "--base", "main"], project, check=False)
    assert result.returncode == 2 and "is not a git revision here" in result.stderr


def test_workflow_is_valid_and_calls_only_commands_the_project_has():
    workflow = yaml.safe_load((REPO / ".github/workflows/model-review.yml").read_text())
    steps = workflow["jobs"]["review"]["steps"]
    make_targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    catdog_commands = set(build_parser()._subparsers._group_actions[0].choices)
    seen = set()
    for step in steps:
        for line in step.get("run", "").splitlines():
            words = shlex.split(line.split(">")[0])
            if not words:
                continue
            seen.add(words[0])
            if words[0] == "make":
                assert words[1] in make_targets, line
            elif words[0] == ".venv/bin/catdog":
                assert words[1] in catdog_commands, line
            else:
                assert words[0] in {"echo", "gh"}, line
    assert {"make", ".venv/bin/catdog", "gh"} <= seen
    assert any(s.get("uses", "").startswith("actions/checkout") and s["with"]["fetch-depth"] == 0 for s in steps)
