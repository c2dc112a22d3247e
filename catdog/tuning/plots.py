"""A sweep's PNGs: Optuna's parallel coordinates, optimization history and parameter importances,
and the validation curves of the best trials beside the pruned ones (from their DVCLive folders)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from catdog.core.config import SweepParams
from catdog.core.plots import plt, save_figure
from catdog.tuning.study import SweepPlace

BEST_CURVES = 5


def draw(study: optuna.Study, sweep: SweepParams, where: SweepPlace, best: list) -> list[Path]:
    """Every plot the trials so far allow (`best`: the best trials, best first); returns the files written."""
    folder = where.folder / "plots"
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawn = []
    optuna_made = [("optimization_history", optuna_plots.plot_optimization_history)]
    if len(done) >= 2:
        optuna_made.append(("parallel_coordinate", optuna_plots.plot_parallel_coordinate))
        if len(sweep.space) >= 2 or any(len(v) > 1 for v in sweep.space.values() if isinstance(v, list)):
            optuna_made.append(("param_importances", optuna_plots.plot_param_importances))
    for name, plot in optuna_made:
        try:
            axes = plot(study, target_name=sweep.objective) if name != "parallel_coordinate" else plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as why:  # too few distinct trials to say anything
            print(f"sweep: no {name} plot yet ({why})")
            continue
        drawn.append(_written(axes.figure, folder / f"{name}.png"))
    drawn.append(learning_curves(study, sweep, where, best[:BEST_CURVES], folder / "learning_curves.png"))
    return drawn


def _written(figure, target: Path) -> Path:
    save_figure(figure, target)
    return target


def curves(where: SweepPlace, trial, metric: str) -> pd.DataFrame | None:
    """One trial of the search's per-epoch validation curve, from its DVCLive folder."""
    name = metric.removeprefix("val_")
    path = where.trials / f"{trial.number:04d}" / "plots" / "metrics" / "eval" / f"{name}.tsv"
    return pd.read_csv(path, sep="\t") if path.exists() else None


def learning_curves(study: optuna.Study, sweep: SweepParams, where: SweepPlace, best: list, target: Path) -> Path:
    figure, axis = plt.subplots(figsize=(7, 4))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    for trial in pruned:
        frame = curves(where, trial, sweep.objective)
        if frame is not None:
            axis.plot(frame["step"], frame.iloc[:, -1], ".-", color="0.7", linewidth=1)
    for trial in best:
        frame = curves(where, trial, sweep.objective)
        if frame is not None:
            label = f"#{trial.number} " + " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in trial.params.items())
            axis.plot(frame["step"], frame.iloc[:, -1], "o-", label=label)
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel(sweep.objective)
    axis.set_title(f"validation curves: the {len(best)} best trials" + (", pruned in grey" if pruned else ""))
    if best:
        axis.legend(fontsize=7)
    return _written(figure, target)
