"""Predict cat or dog for images with a registered (or given) model: `catdog predict` and
`catdog serve` both load models and label scores here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catdog.data.images import ImageError, load_model_input


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str | None
    p_dog: float | None
    error: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A model with what its run says about its input and its decision."""

    version: str  # the registry version, or the .keras file's path
    model: Any
    image_size: int
    resize: str
    threshold: float
    flip_tta: bool = False  # its run evaluated with test-time flips: predict the same way


def load_for_prediction(registry, ref: str, precision: str = "trained", flip_tta: bool | None = None) -> LoadedModel:
    """`ref` is a .keras file, 'production', 'latest' or vNNNN; registry versions are checked
    against their sha256 and use their own run's resize policy and threshold. The model computes
    in the precision it was trained in, or in `precision` (float32, mixed_bfloat16, or auto), and
    averages over mirror images as its run evaluated, or as `flip_tta` says."""
    from catdog.model.network import load_model, with_precision
    from catdog.model.precision import resolve

    model_file = Path(ref)
    if model_file.suffix == ".keras" and model_file.exists():
        model, version, resize, threshold, flip = load_model(model_file), str(model_file), "stretch", 0.5, False
    else:
        card = registry.card(ref)
        model, version = registry.load_model(card["version"]), card["version"]
        resize, evaluated = card["params"]["preprocess"]["resize"], card["params"]["evaluate"]
        threshold, flip = evaluated["threshold"], evaluated.get("flip_tta", False)
    if precision != "trained":
        model = with_precision(model, resolve(precision)[0])
    return LoadedModel(version, model, model.input_shape[1], resize, threshold, flip if flip_tta is None else flip_tta)


def label_of(p_dog: float, threshold: float) -> str:
    return "dog" if p_dog >= threshold else "cat"


def predict_files(
    model,
    paths: list[Path],
    image_size: int,
    resize: str = "stretch",
    threshold: float = 0.5,
    batch_size: int = 32,
    flip: bool = False,
    *,
    max_pixels: int,
) -> list[Prediction]:
    """Every readable file gets a prediction; every unreadable one an error (over `max_pixels`,
    validate.max_pixels, too), in input order. With `flip`, p(dog) is averaged over each image and
    its mirror image."""
    from catdog.model.network import predict_p_dog

    inputs, errors = {}, {}
    for path in paths:
        try:
            inputs[str(path)] = load_model_input(path, image_size, resize, max_pixels=max_pixels)
        except (ImageError, OSError) as error:
            errors[str(path)] = str(error)
    scores = {}
    if inputs:
        images = np.stack(list(inputs.values()))[..., np.newaxis]
        p_dog = predict_p_dog(model, (images[i : i + batch_size] for i in range(0, len(images), batch_size)), flip)
        scores = dict(zip(inputs, p_dog.tolist()))
    results = []
    for path in map(str, paths):
        if path in scores:
            results.append(Prediction(path, label_of(scores[path], threshold), round(scores[path], 6)))
        else:
            results.append(Prediction(path, None, None, errors[path]))
    return results
