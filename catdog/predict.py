"""Predict cat or dog for image files with a registered (or given) model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog.images import ImageError, load_model_input


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str | None
    p_dog: float | None
    error: str | None = None


def predict_files(model, paths: list[Path], image_size: int, resize: str = "stretch",
                  threshold: float = 0.5, batch_size: int = 32) -> list[Prediction]:
    """Every readable file gets a prediction; every unreadable one an error, in input order."""
    from catdog.model import predict_p_dog

    inputs, errors = {}, {}
    for path in paths:
        try:
            inputs[str(path)] = load_model_input(path, image_size, resize)
        except (ImageError, OSError) as error:
            errors[str(path)] = str(error)
    scores = {}
    if inputs:
        images = np.stack(list(inputs.values()))[..., np.newaxis]
        p_dog = predict_p_dog(model, (images[i:i + batch_size] for i in range(0, len(images), batch_size)))
        scores = dict(zip(inputs, p_dog.tolist()))
    results = []
    for path in map(str, paths):
        if path in scores:
            label = "dog" if scores[path] >= threshold else "cat"
            results.append(Prediction(path, label, round(scores[path], 6)))
        else:
            results.append(Prediction(path, None, None, errors[path]))
    return results
