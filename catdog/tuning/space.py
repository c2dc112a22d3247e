"""params.yaml's `sweep.space` as Optuna sees it, and a trial's values as train params."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from catdog.core.config import SweepParams, TrainParams

SEED = "train.seed"  # what a confirmation run varies


def suggest(trial, space: dict) -> dict[str, Any]:
    """The trial's value for each key of the space: a choice from a list, or a draw from a range."""
    hints = typing.get_type_hints(TrainParams)
    values = {}
    for key, spec in space.items():
        if isinstance(spec, dict):
            number = int if int in _types(hints[key.split(".", 1)[1]]) else float
            suggest_range = trial.suggest_int if number is int else trial.suggest_float
            values[key] = suggest_range(key, number(spec["low"]), number(spec["high"]), log=bool(spec.get("log")))
        else:
            values[key] = trial.suggest_categorical(key, spec)
    return values


def _types(hint) -> tuple:
    return typing.get_args(hint) or (hint,)


def grid(space: dict) -> dict[str, list]:
    return {key: list(spec) for key, spec in space.items()}


def grid_size(space: dict) -> int:
    size = 1
    for spec in space.values():
        size *= len(spec)
    return size


def total_trials(sweep: SweepParams) -> int | None:
    """How many trials the sweep runs: sweep.trials, else the whole grid; None: until max_minutes."""
    if sweep.trials is not None:
        return sweep.trials
    return grid_size(sweep.space) if sweep.method == "grid" else None


def confirmation_seeds(params) -> list[int]:
    """train.seed + 1, + 2, ...: the seeds a confirmed setting runs again with."""
    return [params.train.seed + k for k in range(1, params.sweep.confirm_seeds + 1)]


def trial_params(base: TrainParams, values: dict[str, Any], max_epochs: int) -> TrainParams:
    """The pipeline's train params with the trial's values, for `max_epochs` epochs at full size."""
    changes = {key.split(".", 1)[1]: value for key, value in values.items()}
    return dataclasses.replace(base, **changes, epochs=max_epochs)


def short(values: dict[str, Any]) -> str:
    """`learning_rate=0.001 batch_size=32`: a setting in one line."""
    return " ".join(
        f"{key.split('.', 1)[1]}={value:g}" if isinstance(value, float) else f"{key.split('.', 1)[1]}={value}"
        for key, value in values.items()
    )
