"""Infra validation: a candidate is promoted only if it answers as evaluated through the serving path."""

from __future__ import annotations

import dataclasses

import pandas as pd

from catdog.core.config import Params, PreprocessParams
from catdog.serving.servable import servable_problem
from tests.conftest import MAX_PIXELS, image_bytes


def _setup(tmp_path, size=(64, 32)):
    from catdog.model.network import build_model
    from catdog.serving.predict import predict_files

    folder = tmp_path / "ingested"
    (folder / "images").mkdir(parents=True)
    paths = []
    for i in range(4):
        path = folder / "images" / f"{i}.png"
        path.write_bytes(image_bytes("dog" if i % 2 else "cat", size, "PNG", seed=i))
        paths.append(path)
    model_file = tmp_path / "model.keras"
    model = build_model(image_size=32)
    # An untrained model answers near 0.5 whatever it sees; a steeper last layer makes a change of
    # the conversion show in p(dog), as it does in a trained one.
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 50, bias])
    model.save(model_file)
    from catdog.model.network import load_model

    evaluated = predict_files(load_model(model_file), paths, 32, "stretch", max_pixels=MAX_PIXELS)
    answers = pd.DataFrame(
        {"path": [f"images/{i}.png" for i in range(4)], "p_dog": [round(r.p_dog, 3) for r in evaluated]}
    )
    return model_file, answers, folder


def test_a_candidate_that_answers_as_evaluated_passes(tmp_path):
    model_file, answers, folder = _setup(tmp_path)
    assert servable_problem(model_file, Params(), answers, folder) is None


def test_train_serve_skew_a_damaged_model_and_an_unreadable_image_are_refused_with_the_reason(tmp_path):
    model_file, answers, folder = _setup(tmp_path)
    cropped = dataclasses.replace(Params(), preprocess=PreprocessParams(resize="crop"))  # not what evaluate saw
    problem = servable_problem(model_file, cropped, answers, folder)
    assert (
        problem and "served answers differ from evaluate's" in problem and "would not be the evaluated one" in problem
    )

    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(model_file.read_bytes()[:5000])
    assert "cannot be loaded as the server loads it" in servable_problem(damaged, Params(), answers, folder)

    (folder / "images" / "2.png").write_bytes(b"gone bad")
    assert "test image images/2.png cannot be read through the serving path" in servable_problem(
        model_file, Params(), answers, folder
    )
