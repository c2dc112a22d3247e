"""`catdog monitor`: what the served model saw and said, in plain words, from the prediction log.

For a window (`--since 24h`): images served per model version; the share of low-confidence
answers (|p_dog - 0.5| < monitor.uncertain_band); the served inputs' drift against production's
training data (catdog/data/drift.py's Great Expectations checks, the ones validate runs); the shift of
the p_dog distribution from production's answers on its test images; and, for photos that were
labelled since, the online accuracy per version with a 95% Wilson interval. `plot` draws the same
per day.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from catdog.core.config import Params
from catdog.core.errors import CatdogError
from catdog.data.drift import (
    DriftReport,
    PredictionShift,
    compare_with_production,
    prediction_shift,
)
from catdog.monitoring.labelling import CLASSES, read_labels
from catdog.monitoring.prediction_log import SHADOW_LOG, read_gaps, read_log, utc_now
from catdog.registry.gate import Paired, compare, wilson_interval
from catdog.registry.store import Registry

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """'24h', '90m', '7d', '2w', or an ISO date/time (UTC unless it says otherwise)."""
    now = now or utc_now()
    match = _DURATION.match(text.strip().lower())
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CatdogError(
            f"--since {text!r}: use a duration such as 24h, 90m, 7d, or a date such as 2026-12-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class VersionFacts:
    served: int
    uncertain: int
    labelled: int = 0
    correct: int = 0

    @property
    def uncertain_share(self) -> float:
        return self.uncertain / self.served if self.served else 0.0

    @property
    def accuracy_ci95(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.labelled)


@dataclass(frozen=True)
class MonitorReport:
    since: dt.datetime
    until: dt.datetime
    uncertain_band: float
    versions: dict[str, VersionFacts]
    rejected: int
    drift: DriftReport | None
    shift: PredictionShift | None
    notes: list[str] = field(default_factory=list)

    @property
    def served(self) -> int:
        return sum(v.served for v in self.versions.values())

    def lines(self) -> list[str]:
        window = f"{self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M} UTC"
        if not self.served and not self.rejected:
            return [f"catdog monitor, {window}: nothing was served in this window."]
        lines = [
            f"catdog monitor, {window}: {self.served:,} images answered"
            f"{f', {self.rejected:,} uploads unreadable' if self.rejected else ''}."
        ]
        for version, facts in sorted(self.versions.items()):
            line = (
                f"- {version}: {facts.served:,} images, {facts.uncertain_share:.1%} low-confidence "
                f"(p_dog within {self.uncertain_band} of 0.5)"
            )
            if facts.labelled:
                low, high = facts.accuracy_ci95
                line += (
                    f"; online accuracy {facts.correct / facts.labelled:.1%} [{low:.1%}, {high:.1%}] on "
                    f"{facts.labelled} labelled photos"
                )
            else:
                line += "; no labelled photos yet, so no online accuracy"
            lines.append(line)
        if self.drift is not None:
            lines.append(f"- inputs: {'DRIFT: ' if self.drift.drifted else ''}{self.drift.summary()}")
        if self.shift is not None:
            lines.append(f"- answers: {'SHIFT: ' if self.shift.shifted else ''}{self.shift.summary()}")
        return lines + [f"- {note}" for note in self.notes]

    def text(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "served": self.served,
            "rejected": self.rejected,
            "uncertain_band": self.uncertain_band,
            "versions": {
                v: {
                    "served": f.served,
                    "uncertain": f.uncertain,
                    "uncertain_share": f.uncertain_share,
                    "labelled": f.labelled,
                    "correct": f.correct,
                    "accuracy": f.correct / f.labelled if f.labelled else None,
                    "accuracy_ci95": list(f.accuracy_ci95) if f.labelled else None,
                }
                for v, f in self.versions.items()
            },
            "drift": self.drift.to_dict() if self.drift else None,
            "prediction_shift": self.shift.to_dict() if self.shift else None,
            "notes": self.notes,
        }


def answered_with_labels(log: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Each answered image with its label where one was given (cat or dog), and whether it was right."""
    answered = log[log["error"].isna()].copy()
    truth = labels[labels["label"].isin(CLASSES)].drop_duplicates("sha256").set_index("sha256")["label"]
    answered["truth"] = answered["sha256"].map(truth)
    answered["correct"] = answered["truth"] == answered["label"]
    return answered


def per_version(answered: pd.DataFrame, band: float) -> dict[str, VersionFacts]:
    facts = {}
    for version, rows in answered.groupby("model_version"):
        once = rows.drop_duplicates("sha256")  # a photo served twice is judged once
        judged = once[once["truth"].notna()]
        facts[str(version)] = VersionFacts(
            len(rows), int(((rows["p_dog"] - 0.5).abs() < band).sum()), len(judged), int(judged["correct"].sum())
        )
    return facts


def build(params: Params, serving_dir: Path, registry: Registry, since: dt.datetime, checker=None) -> MonitorReport:
    """The report for records at or after `since`. `checker` runs GX suites (a GXChecker); without one,
    a throw-away one is made when drift can be judged."""
    log = read_log(serving_dir, since)
    answered = answered_with_labels(log, read_labels(serving_dir))
    drift = shift = None
    notes = [gap_note(gap) for gap in read_gaps(serving_dir, since)]
    production = registry.production_data()
    if not answered.empty:
        checker = checker or _checker(serving_dir)
        unique = answered.drop_duplicates("sha256")
        if production is None:
            notes.append("no production model with a data profile: the inputs' drift cannot be judged")
        else:
            rejected_share = float(log["error"].notna().mean())
            drift = compare_with_production(
                unique,
                rejected_share,
                production,
                checker.check,
                params.validate.drift_max_kl,
                labels_are="dog answers",
            )
        version = registry.state()["production"]
        test = registry.test_predictions(version) if version else None
        served_by_production = unique[unique["model_version"] == version]["p_dog"]
        shift = prediction_shift(
            served_by_production,
            pd.read_csv(test)["p_dog"] if test else None,
            version,
            checker.check,
            params.validate.drift_max_kl,
        )
    return MonitorReport(
        since,
        utc_now(),
        params.monitor.uncertain_band,
        per_version(answered, params.monitor.uncertain_band),
        int(log["error"].notna().sum()),
        drift,
        shift,
        notes,
    )


def gap_note(gap: dict) -> str:
    return (
        f"GAP: {gap['lost']:,} {gap['what']} not recorded from {gap['since']} to {gap['until']} ({gap['why']}); "
        "the answers were sent, the figures above miss them"
    )


def _checker(serving_dir: Path):
    from catdog.data.expectations import GXChecker, quiet_gx

    quiet_gx()
    return GXChecker(serving_dir / "monitor" / "data_docs")


def daily(serving_dir: Path, since: dt.datetime, band: float) -> pd.DataFrame:
    """Per UTC day and version: images served, low-confidence share, online accuracy and its interval."""
    answered = answered_with_labels(read_log(serving_dir, since), read_labels(serving_dir))
    rows = []
    for (day, version), group in answered.groupby([answered["time"].dt.date, "model_version"]):
        facts = per_version(group, band)[str(version)]
        low, high = facts.accuracy_ci95
        rows.append(
            {
                "day": day,
                "version": version,
                "served": facts.served,
                "uncertain_share": facts.uncertain_share,
                "labelled": facts.labelled,
                "accuracy": facts.correct / facts.labelled if facts.labelled else None,
                "accuracy_low": low if facts.labelled else None,
                "accuracy_high": high if facts.labelled else None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "day",
            "version",
            "served",
            "uncertain_share",
            "labelled",
            "accuracy",
            "accuracy_low",
            "accuracy_high",
        ],
    )


def plot(days: pd.DataFrame, target: Path) -> Path:
    """Three panels over days: images served, low-confidence share, online accuracy (95% interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from catdog.core.files import atomic_path

    figure, (served, uncertain, accuracy) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for version, rows in days.groupby("version"):
        served.bar(pd.to_datetime(rows["day"]), rows["served"], label=version, alpha=0.7)
        uncertain.plot(pd.to_datetime(rows["day"]), rows["uncertain_share"] * 100, marker="o", label=version)
        judged = rows[rows["labelled"] > 0]
        if not judged.empty:
            centre = judged["accuracy"] * 100
            accuracy.errorbar(
                pd.to_datetime(judged["day"]),
                centre,
                marker="o",
                capsize=4,
                label=version,
                yerr=[centre - judged["accuracy_low"] * 100, judged["accuracy_high"] * 100 - centre],
            )
    import matplotlib.dates

    served.set_ylabel("images served")
    uncertain.set_ylabel("low-confidence %")
    accuracy.set_ylabel("online accuracy %")
    uncertain.set_ylim(0, 100)
    accuracy.set_ylim(0, 100)
    first, last = pd.to_datetime(days["day"]).min(), pd.to_datetime(days["day"]).max()
    accuracy.set_xlim(first - pd.Timedelta(days=1), last + pd.Timedelta(days=1))
    accuracy.xaxis.set_major_locator(matplotlib.dates.DayLocator(interval=max(1, (last - first).days // 8)))
    accuracy.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%Y-%m-%d"))
    for axis in (served, uncertain, accuracy):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(title="model", fontsize=8)
    served.set_title("catdog serving, per day (UTC)")
    figure.autofmt_xdate()
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return target


def run(
    params: Params, serving_dir: Path, registry: Registry, since: dt.datetime, plot_file: Path | None = None
) -> MonitorReport:
    """`catdog monitor`: the report, and the per-day plot where something was served."""
    report = build(params, serving_dir, registry, since)
    if plot_file is not None and report.served:
        plot(daily(serving_dir, since, params.monitor.uncertain_band), plot_file)
    return report


@dataclass(frozen=True)
class ShadowComparison:
    """A shadow candidate against production on the same live images."""

    version: str
    production_version: str
    images: int
    agreement: float
    paired: Paired | None  # on the labelled ones

    def sentence(self) -> str:
        text = (
            f"live shadow traffic: {self.version} agreed with production {self.production_version} on "
            f"{self.agreement:.1%} of {self.images} served images"
        )
        if self.paired is None:
            return text + "; none of them labelled yet, so no accuracies"
        return text + f"; on the {self.paired.images} labelled: {self.version} {self.paired.sentence()}"

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "production_version": self.production_version,
            "images": self.images,
            "agreement": self.agreement,
            "paired": self.paired.to_dict() if self.paired else None,
        }


def shadow_comparison(serving_dir: Path, version: str, since: dt.datetime | None = None) -> ShadowComparison | None:
    """How `version`, shadow scoring, compared with production on the images both answered; with labels,
    both accuracies on the same labelled images and the gate's paired test. None: it never shadowed."""
    frames = [read_log(folder, since, shadow=True) for folder in (serving_dir, serving_dir / SHADOW_LOG)]
    rows = pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)
    rows = rows[rows["model_version"] == version]
    if rows.empty:
        return None
    production = str(rows["production_version"].mode().iloc[0])
    agreement = float((rows["label"] == rows["production_label"]).mean())
    labels = read_labels(serving_dir)
    truth = labels[labels["label"].isin(CLASSES)].drop_duplicates("sha256").set_index("sha256")["label"]
    judged = rows.drop_duplicates("sha256").assign(truth=lambda f: f["sha256"].map(truth)).dropna(subset=["truth"])
    paired = (
        compare(
            (judged["label"] == judged["truth"]).to_numpy(),
            (judged["production_label"] == judged["truth"]).to_numpy(),
            production,
        )
        if len(judged)
        else None
    )
    return ShadowComparison(version, production, len(rows), agreement, paired)
