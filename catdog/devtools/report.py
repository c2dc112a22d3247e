"""`catdog report`: what a change did to the model, as one Markdown report for a pull request.

Metrics come from data/metrics/evaluate/metrics.json at the base revision (`git show`) and in the
workspace, the same files `dvc metrics diff` compares; changed params from `dvc params diff`.
Both are small files tracked by git, so no DVC cache is needed;
comparison plots (training curves, ROC, confusion matrices) are rendered locally as PNGs
next to the report.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from catdog.core.errors import CatdogError
from catdog.core.live import history_frame, read_history
from catdog.core.paths import project
from catdog.core.tools import program

REPORTED_METRICS = ["accuracy", "accuracy_cat", "accuracy_dog", "precision", "recall", "f1", "roc_auc", "loss", "ece"]
LOWER_IS_BETTER = {"loss", "ece"}
EVALUATE = "data/metrics/evaluate/metrics.json"
TRAIN_LIVE = "data/metrics/train"  # the train stage's DVCLive folder


@dataclass(frozen=True)
class Report:
    markdown: str
    verdict: str
    images: list[Path]
    out_dir: Path


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise CatdogError(f"`{' '.join(args)}` failed: {(result.stderr or result.stdout).strip()[-800:]}")
    return result.stdout


def _git_file(root: Path, rev: str, path: str) -> str | None:
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def _base_frame(root: Path, rev: str, path: str, sep: str = ",") -> pd.DataFrame | None:
    text = _git_file(root, rev, path)
    return pd.read_csv(io.StringIO(text), sep=sep) if text else None


def metric_rows(root: Path, base: str) -> list[dict]:
    """Each reported metric at base and in the workspace, with the change."""
    base_text = _git_file(root, base, EVALUATE)
    old = json.loads(base_text) if base_text else {}
    new_path = root / EVALUATE
    new = json.loads(new_path.read_text()) if new_path.exists() else {}
    rows = []
    for key in REPORTED_METRICS:
        before, after = old.get(key), new.get(key)
        delta = after - before if isinstance(before, (int, float)) and isinstance(after, (int, float)) else None
        rows.append({"metric": key, "base": before, "workspace": after, "change": delta})
    return rows


def param_changes(root: Path, base: str) -> dict[str, dict]:
    diff = json.loads(_run([program("dvc"), "params", "diff", base, "--json"], root) or "{}")
    return {key: change for changes in diff.values() for key, change in changes.items()}


def verdict_of(rows: list[dict], tolerance: float) -> str:
    accuracy = next(r for r in rows if r["metric"] == "accuracy")
    if accuracy["change"] is None:
        return "new" if accuracy["workspace"] is not None else "unknown"
    if accuracy["change"] > tolerance:
        return "better"
    if accuracy["change"] < -tolerance:
        return "worse"
    return "same"


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _change(row: dict, tolerance: float) -> str:
    """'+0.0123 ✅' (better), '-0.0123 ❌' (worse), '+0.0001' (within tolerance), '' (no base)."""
    change = row["change"]
    if change is None:
        return ""
    if abs(change) <= tolerance:
        return f"{change:+.4f}"
    good = change < 0 if row["metric"] in LOWER_IS_BETTER else change > 0
    return f"{change:+.4f} {'✅' if good else '❌'}"


def _plots(root: Path, base: str, out_dir: Path) -> list[Path]:
    """Comparison PNGs of base and workspace: training curves, ROC, confusion matrices."""
    from catdog.core import plots

    metrics = project(root).metrics
    out_dir.mkdir(parents=True, exist_ok=True)

    def frames(name: str) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        new = metrics / name
        return _base_frame(root, base, f"data/metrics/{name}"), pd.read_csv(new) if new.exists() else None

    made = []
    curves = f"{TRAIN_LIVE}/plots/metrics"
    old = history_frame(lambda name: _base_frame(root, base, f"{curves}/{name}.tsv", sep="\t"))
    new = read_history(root / TRAIN_LIVE)
    if new is not None:
        plots.training_curves({base: old, "this change": new}, out_dir / "history.png")
        made.append(out_dir / "history.png")
    old, new = frames("roc.csv")
    if new is not None:
        plots.roc({base: old, "this change": new}, out_dir / "roc.png")
        made.append(out_dir / "roc.png")
    old, new = frames("confusion.csv")
    if new is not None:
        plots.compare_confusion(old, new, base, out_dir / "confusion.png")
        made.append(out_dir / "confusion.png")
        if _why_misclassified(root, new, out_dir / "why-misclassified.png"):
            made.append(out_dir / "why-misclassified.png")
    return made


def _why_misclassified(root: Path, answers: pd.DataFrame, target: Path) -> bool:
    """Why-maps of the misclassified test photos, where this workspace has the model and the photos
    (a clone without the DVC cache has neither: then there is no such plot)."""
    from catdog.core.config import load_params

    paths = project(root)
    params = load_params(paths.params)
    wrong = answers[answers["actual"] != answers["predicted"]].head(params.evaluate.misclassified_shown)
    files = [paths.ingested / path for path in wrong["path"]]
    if not paths.model.exists() or not all(f.exists() for f in files):
        return False
    import numpy as np

    from catdog.data.images import load_model_input
    from catdog.model.network import load_model
    from catdog.model.why_maps import grad_cam, misclassified_grid

    model = load_model(paths.model)
    size = model.input_shape[1]
    pixels = (
        np.stack(
            [load_model_input(f, size, params.preprocess.resize, max_pixels=params.validate.max_pixels) for f in files]
        )
        if files
        else np.zeros((0, size, size), np.uint8)
    )
    heat = grad_cam(model, pixels, params.evaluate.threshold) if files else pixels.astype(np.float32)
    misclassified_grid(pixels, heat, wrong, target)
    return True


def build(root: Path | str = ".", base: str = "HEAD", out_dir: Path | None = None, tolerance: float = 0.005) -> Report:
    root = Path(root).resolve()
    if (
        subprocess.run(["git", "rev-parse", "--verify", f"{base}^{{commit}}"], cwd=root, capture_output=True).returncode
        != 0
    ):
        raise CatdogError(
            f"report: {base!r} is not a git revision here (the report compares against git; "
            "use --base main, HEAD, or a commit)"
        )
    out_dir = Path(out_dir) if out_dir else root / "data" / "report"
    rows = metric_rows(root, base)
    params = param_changes(root, base)
    verdict = verdict_of(rows, tolerance)
    images = _plots(root, base, out_dir)
    base_register = json.loads(_git_file(root, base, "data/metrics/register.json") or "{}")
    register_path = root / "data/metrics/register.json"
    register = json.loads(register_path.read_text()) if register_path.exists() else {}

    accuracy = rows[0]
    headline = {
        "better": "📈 better than",
        "worse": "📉 worse than",
        "same": "➖ the same as",
        "new": "🆕 new, nothing to compare with at",
        "unknown": "❔ no metrics to compare with",
    }[verdict]
    lines = [
        f"## Model review: {headline} `{base}`",
        "",
        f"**Verdict: {verdict}** — test accuracy {_fmt(accuracy['base'])} → {_fmt(accuracy['workspace'])}"
        + (
            f" ({accuracy['change']:+.4f}; same within ±{tolerance})"
            if verdict == "same"
            else f" ({accuracy['change']:+.4f})"
            if accuracy["change"] is not None
            else ""
        ),
        "",
        f"| metric | `{base}` | this change | Δ |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['metric']} | {_fmt(r['base'])} | {_fmt(r['workspace'])} | {_change(r, tolerance)} |" for r in rows]
    lines += ["", "### Params changed", ""]
    if params:
        lines += ["| param | `" + base + "` | this change |", "|---|---|---|"]
        lines += [f"| `{key}` | {c.get('old', '—')} | {c.get('new', '—')} |" for key, c in sorted(params.items())]
    else:
        lines.append("None.")
    lines += ["", "### Registry", ""]
    if register:
        status = "production" if register.get("production") else "candidate"
        lines.append(f"This change's model: **{register.get('version')}**, {status}: {register.get('reason')}.")
        if register.get("comparison"):
            from catdog.registry.gate import Paired

            paired = Paired(**register["comparison"])
            lines += [
                "",
                "| on the same test images | accuracy | 95% interval |",
                "|---|---:|---|",
                f"| this change ({register.get('version')}) | {paired.candidate_accuracy:.4f} | "
                f"{paired.candidate_ci95[0]:.3f}-{paired.candidate_ci95[1]:.3f} |",
                f"| production {paired.production_version} | {paired.production_accuracy:.4f} | "
                f"{paired.production_ci95[0]:.3f}-{paired.production_ci95[1]:.3f} |",
                f"| difference | {paired.difference:+.4f} | {paired.difference_ci95[0]:+.3f} to "
                f"{paired.difference_ci95[1]:+.3f} (McNemar p = {paired.p_value:.3g}) |",
            ]
    if base_register:
        lines.append(
            f"At `{base}`: {base_register.get('version')} "
            f"({'production' if base_register.get('production') else 'candidate'})."
        )
    lines += ["", "### Plots", ""]
    lines += [f"![{image.stem}]({image.relative_to(out_dir).as_posix()})" for image in images]
    markdown = "\n".join(lines) + "\n"
    (out_dir / "report.md").write_text(markdown)
    return Report(markdown, verdict, images, out_dir)


def dvc_status(root: Path | str = ".") -> dict:
    """`dvc status --json`: stage -> what changed (deps, params, outs, or 'always changed')."""
    return json.loads(_run([program("dvc"), "status", "--json"], Path(root)) or "{}")


def stale_outputs(root: Path | str = ".") -> list[str]:
    """What `dvc status` says is out of date, ignoring data that is only absent from the cache.

    In a fresh clone (a PR job) the DVC-cached data is not there; that is expected. What must
    not happen is committed metrics that do not match the committed params, code or lock.
    """
    status = dvc_status(root)
    stale = []
    for stage, entries in status.items():
        for entry in entries if isinstance(entries, list) else []:
            for kind, changes in entry.items() if isinstance(entry, dict) else []:
                for path, change in changes.items():
                    if isinstance(change, dict):  # params file: {section: modified/new/deleted}
                        stale += [f"{stage}: {path} {key} {what}" for key, what in change.items()]
                    elif change in ("modified", "new") or (change == "deleted" and path.startswith("data/metrics")):
                        stale.append(f"{stage}: {kind.split()[-1][:-1]} {path} {change}")
    return stale
