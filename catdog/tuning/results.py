"""What a sweep found: the leaderboard, the confirmed settings with their spread over seeds, the
winner, and the plots (Optuna's own, and the learning curves of the best trials from DVCLive)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from catdog.core.config import SweepParams
from catdog.core.errors import CatdogError
from catdog.core.files import write_json, write_text
from catdog.tuning.plots import BEST_CURVES, draw
from catdog.tuning.space import SEED, confirmation_seeds, short
from catdog.tuning.study import CONFIRM, SweepPlace, open_study


def status(trial: FrozenTrial, retried_as: dict[int, int]) -> str:
    if trial.state == TrialState.PRUNED:
        return f"pruned at epoch {trial.user_attrs.get('pruned_at_epoch', '?')}"
    if trial.state == TrialState.FAIL and trial.number in retried_as:
        return f"failed: its worker was killed; run again as trial {retried_as[trial.number]}"
    if trial.state == TrialState.FAIL:
        return f"failed: {trial.user_attrs.get('error', 'no reason recorded')}"
    return trial.state.name.lower()


def leaderboard(study: optuna.Study, sweep: SweepParams) -> pd.DataFrame:
    """One row per trial, the best first: its setting, the objective, best epoch, minutes, status."""
    trials = study.get_trials(deepcopy=False)
    retried_as = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    rows = [
        {
            "trial": t.number,
            **{key.split(".", 1)[1]: t.params.get(key) for key in sweep.space},
            sweep.objective: t.user_attrs.get("best_value", t.value),
            "best_epoch": t.user_attrs.get("best_epoch"),
            "epochs": t.user_attrs.get("epochs_trained"),
            "minutes": t.user_attrs.get("minutes"),
            "status": status(t, retried_as),
        }
        for t in trials
        if t.state != TrialState.WAITING
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["_done"] = frame["status"] == "complete"
    ascending = sweep.objective == "val_loss"
    frame = frame.sort_values(["_done", sweep.objective], ascending=[False, ascending], na_position="last")
    return frame.drop(columns="_done").reset_index(drop=True)


@dataclass(frozen=True)
class Confirmed:
    """One setting over seeds: each run's best validation value and best epoch."""

    setting: dict
    values: list[float]
    epochs: list[int]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def spread(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def to_dict(self) -> dict:
        return {
            "setting": self.setting,
            "values": self.values,
            "mean": self.mean,
            "std": self.spread,
            "epochs": self.epochs,
        }


def best_trials(study: optuna.Study, sweep: SweepParams, count: int) -> list[FrozenTrial]:
    """The best complete trials, one per setting."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = sorted(done, key=lambda t: t.value, reverse=sweep.objective != "val_loss")
    best, seen = [], set()
    for trial in done:
        key = tuple(sorted((k, str(v)) for k, v in trial.params.items()))
        if key not in seen:
            seen.add(key)
            best.append(trial)
    return best[:count]


def confirmation_runs(study: optuna.Study, params) -> list[tuple[dict, int]]:
    """(setting, seed) for each extra seed of each of the best settings."""
    best = best_trials(study, params.sweep, params.sweep.confirm_top)
    return [(dict(t.params), seed) for t in best for seed in confirmation_seeds(params)]


def confirmed(study: optuna.Study, confirm: optuna.Study, sweep: SweepParams) -> list[Confirmed]:
    """The best settings with every seed's result, the best mean first."""
    runs = confirm.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    result = []
    for trial in best_trials(study, sweep, max(sweep.confirm_top, 1)):
        same = [r for r in runs if r.user_attrs.get("setting") == trial.params]
        result.append(
            Confirmed(
                trial.params,
                [trial.value, *(r.value for r in same)],
                [trial.user_attrs.get("best_epoch"), *(r.user_attrs.get("best_epoch") for r in same)],
            )
        )
    return sorted(result, key=lambda c: c.mean, reverse=sweep.objective != "val_loss")


def winner(where: SweepPlace, sweep: SweepParams) -> Confirmed:
    study, confirm = open_study(sweep, where), open_study(sweep, where, CONFIRM)
    settings = confirmed(study, confirm, sweep)
    if not settings:
        raise CatdogError(
            f"sweep {where.name!r} has no complete trial yet (fix: run `catdog sweep --name {where.name}`)"
        )
    return settings[0]


def text(study: optuna.Study, confirm: optuna.Study, sweep: SweepParams, where: SweepPlace) -> str:
    board = leaderboard(study, sweep)
    counts = board["status"].str.split().str[0].value_counts().to_dict() if len(board) else {}
    lines = [
        f"sweep {where.name}: {len(board)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
        f"objective {sweep.objective} on the validation split; {sweep.method}, pruner {sweep.pruner}",
        board.to_string(index=False, float_format=lambda v: f"{v:.4g}") if len(board) else "(no trials yet)",
    ]
    settings = confirmed(study, confirm, sweep) if len(board) else []
    if settings:
        lines.append(f"\nbest settings over seeds ({sweep.objective}: mean ± sd, n):")
        lines += [f"  {short(c.setting)}: {c.mean:.4f} ± {c.spread:.4f} (n={len(c.values)})" for c in settings]
        lines.append(
            f"winner: {short(settings[0].setting)}; `catdog sweep apply {where.name}` writes it to params.yaml"
        )
    lines.append(f"plots: {where.folder / 'plots'}/")
    return "\n".join(lines)


def finish(where: SweepPlace, sweep: SweepParams) -> str:
    """The leaderboard (CSV), the confirmed settings (JSON) and the plots, written; the text returned."""
    study, confirm = open_study(sweep, where), open_study(sweep, where, CONFIRM)
    write_text(where.folder / "leaderboard.csv", leaderboard(study, sweep).to_csv(index=False))
    settings = confirmed(study, confirm, sweep)
    write_json(where.folder / "confirmed.json", [c.to_dict() for c in settings])
    draw(study, sweep, where, best_trials(study, sweep, BEST_CURVES))
    return text(study, confirm, sweep, where)


def winner_overrides(best: Confirmed) -> dict:
    """params.yaml keys for the winner: its setting, and its median best epoch as train.epochs."""
    epochs = [e for e in best.epochs if e]
    overrides = {key: value for key, value in best.setting.items() if key != SEED}
    if epochs:
        overrides["train.epochs"] = int(statistics.median_low(epochs))
    return overrides
