"""Infra validation: before the registry promotes a candidate, it must be servable as served.

The candidate is loaded as `catdog serve` loads a version (Keras safe mode, the run's resize
policy, threshold and test-time flips), and a few of the images the gate judged it on are
answered through the serving conversion (`load_model_input_and_facts` on the file's bytes,
validate's pixel limit). Each answer must be a probability and agree with evaluate's answer for
the same image (evaluate scored the preprocessed shards): a different answer means the served
model would not be the model that was evaluated (train/serve skew). TFX calls this step the
InfraValidator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from catdog.core.config import Params

SAMPLE = 8  # images answered through the serving path
TOLERANCE = 2e-3  # evaluate's p_dog is kept to 3 decimals


def servable_problem(model_file: Path, params: Params, answers: pd.DataFrame, files: Path) -> str | None:
    """None when the candidate answers like evaluate through the serving path, else why not.
    `answers` are evaluate's (path, p_dog), the paths relative to `files`."""
    from catdog.data.images import ImageError, load_model_input_and_facts
    from catdog.model.network import load_model, predict_p_dog

    try:
        model = load_model(model_file)
    except Exception as error:  # any failure to load is the finding
        return f"the model cannot be loaded as the server loads it: {error}"
    side = model.input_shape[1]
    sample = answers.head(SAMPLE)
    pixels = []
    for path in sample["path"]:
        try:
            data = (files / path).read_bytes()
            pixels.append(
                load_model_input_and_facts(
                    data, side, params.preprocess.resize, max_pixels=params.validate.max_pixels, facts=False
                )[0]
            )
        except (OSError, ImageError) as error:
            return f"test image {path} cannot be read through the serving path: {error}"
    if not pixels:
        return None
    try:
        served = predict_p_dog(model, [np.stack(pixels)[..., np.newaxis]], params.evaluate.flip_tta)
    except Exception as error:
        return f"the model cannot answer through the serving path: {error}"
    if not np.all(np.isfinite(served)) or served.min() < 0 or served.max() > 1:
        return f"the serving path gives p(dog) outside 0-1: {served.tolist()}"
    differs = np.abs(served - sample["p_dog"].to_numpy(float)) > TOLERANCE
    if differs.any():
        worst = int(np.argmax(np.abs(served - sample["p_dog"].to_numpy(float))))
        return (
            f"served answers differ from evaluate's on {int(differs.sum())} of {len(sample)} test images "
            f"(e.g. {sample['path'].iloc[worst]}: p(dog) {served[worst]:.4f} served vs "
            f"{sample['p_dog'].iloc[worst]:.4f} evaluated): the served model would not be the evaluated one"
        )
    return None
