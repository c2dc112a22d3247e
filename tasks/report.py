"""Prefect artifacts a reviewer wants at the end of a run: summary, metrics table, links."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from catdog.core.paths import project

METRIC_KEYS = ["accuracy", "precision", "recall", "f1", "roc_auc", "loss", "ece", "accuracy_cat", "accuracy_dog"]


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def summary_markdown(project_dir: Path, outcomes: list[dict], changes: dict) -> str:
    paths = project(project_dir)
    counts = _read(paths.metrics / "validate.json")
    metrics = _read(paths.evaluation)
    decision = _read(paths.metrics / "register.json")
    verdict = "**production**" if decision.get("production") else "candidate"
    lines = [
        f"# catdog run: model {decision.get('version', '?')} is {verdict}",
        "",
        f"Registry decision: {decision.get('reason', 'n/a')} (production is now "
        f"{decision.get('production_version') or 'none'}).",
        "",
        "## Stages",
        "",
        "| stage | this run |",
        "|---|---|",
    ]
    lines += [f"| {o['stage']} | {'ran' if o['ran'] else 'unchanged, skipped'} |" for o in outcomes]
    lines += ["", "## Source", "", source_sentence(_read(paths.cache / "source-changes.json"))]
    drift = _read(paths.validated / "drift.json")
    lines += [
        "",
        "## Drift",
        "",
        (
            ("**Warning:** " if drift.get("drifted") else "") + drift["summary"] + "."
            if drift
            else "Not checked in this run."
        ),
    ]
    lines += [
        "",
        "## Data",
        "",
        f"{counts.get('files', '?')} files ingested, {counts.get('accepted', '?')} accepted "
        f"({counts.get('accepted_cat', '?')} cat, {counts.get('accepted_dog', '?')} dog), "
        f"{counts.get('rejected', '?')} rejected.",
    ]
    rejected_csv = paths.validated / "rejected.csv"
    if rejected_csv.exists():
        reasons = pd.read_csv(rejected_csv)["reason"].value_counts().head(5)
        lines += [f"- {n} × {reason}" for reason, n in reasons.items()]
    lines += ["", "## Test metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {metrics[k]:.4f} |" for k in METRIC_KEYS if k in metrics]
    if "test_source" in metrics:
        on_set = metrics["test_source"]
        lines += [
            "",
            f"On the curated test set ({on_set['test_images']} images): accuracy {on_set['accuracy']:.4f} "
            f"(cat {on_set['accuracy_cat']:.4f}, dog {on_set['accuracy_dog']:.4f}), ECE {on_set['ece']:.4f}.",
        ]
    lines += ["", "## Serving (the last 24 hours)", "", *serving_lines(paths)]
    if changes:
        lines += ["", "## Params changed by this run (written to params.yaml, recorded in dvc.lock)", ""]
        lines += [f"- `{key}`: {old!r} → {new!r}" for key, (old, new) in changes.items()]
    lines += ["", f"Validation report: `{paths.validated / 'data_docs' / 'index.html'}`", f"Plots: `{paths.plots}`"]
    return "\n".join(lines)


def serving_lines(paths) -> list[str]:
    """`catdog monitor --since 24h` in the summary, and its per-day plot (last 30 days) beside it."""
    from catdog.core.config import load_params
    from catdog.monitoring import monitor
    from catdog.monitoring.prediction_log import log_files
    from catdog.registry.store import Registry

    if not log_files(paths.serving):
        return ["Nothing served yet: `catdog serve` logs what it answers in data/serving/ (`catdog monitor`)."]
    now = monitor.utc_now()
    params = load_params(paths.params)
    registry = Registry(params.registry_path(paths.root))
    report = monitor.build(params, paths.serving, registry, now - dt.timedelta(hours=24))
    days = monitor.daily(paths.serving, now - dt.timedelta(days=30), params.monitor.uncertain_band)
    lines = report.lines()
    candidate = registry.newest_candidate()
    shadow = monitor.shadow_comparison(paths.serving, candidate, now - dt.timedelta(hours=24)) if candidate else None
    if shadow is not None:
        lines.append(f"- {shadow.sentence()}")
    if not days.empty:
        monitor.plot(days, paths.serving / "monitor.png")
        lines += ["", f"Per day, the last 30 days: `{paths.serving / 'monitor.png'}`"]
    return lines


def source_sentence(changes: dict) -> str:
    """'20 new photos (12 cat, 8 dog), 1 removed, 0 changed in /photos.' and what the run did with them."""
    if not changes:
        return "The source was not listed in this run."
    labels = ", ".join(f"{n} {label}" for label, n in changes.get("added_by_label", {}).items())
    sentence = (
        f"{changes['added']} new photos{f' ({labels})' if labels else ''}, {changes['removed']} removed, "
        f"{changes['changed']} changed in {changes['source']} ({changes['files']:,} files)."
    )
    if changes.get("held_back"):
        return sentence + " Fewer than ingest.min_changed_files: kept for a later run, nothing retrained."
    if not changes["added"] + changes["removed"] + changes["changed"]:
        return sentence + " Nothing new: the stages that cost anything were skipped."
    return sentence


@task(name="publish-run-report")
def publish_run_report(project_dir: str, outcomes: list[dict], changes: dict) -> str:
    paths = project(project_dir)
    markdown = summary_markdown(paths.root, outcomes, changes)
    create_markdown_artifact(markdown, key="catdog-run-summary", description="catdog pipeline run")
    metrics = _read(paths.evaluation)
    create_table_artifact(
        [{"metric": k, "value": metrics[k]} for k in METRIC_KEYS if k in metrics],
        key="catdog-test-metrics",
        description="metrics on the test split",
    )
    create_link_artifact(
        (paths.validated / "data_docs" / "index.html").as_uri(), "Great Expectations Data Docs", key="catdog-data-docs"
    )
    create_link_artifact(
        paths.plots.as_uri(), "Plots (training curves, confusion, ROC, misclassified)", key="catdog-plots"
    )
    if (paths.serving / "monitor.png").exists():
        create_link_artifact(
            (paths.serving / "monitor.png").as_uri(), "Serving per day (catdog monitor)", key="catdog-serving"
        )
    return markdown
