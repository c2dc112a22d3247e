"""The register stage's gate on real stages: candidate and production scored on the same test images.

The models are built by hand so that the truth is known: an "oracle" spec model whose weights
find the synthetic dogs' bright blob (100% on this data) and a constant "always dog" model.
"""

import json
import shutil

import numpy as np
import pytest

from catdog.core.config import load_params
from catdog.registry.gate import Verdict
from catdog.registry.store import Registry
from tests.conftest import make_project, run, set_params, write_images

pytestmark = pytest.mark.slow


def oracle_model():
    """Spec CNN at 32 px that says dog exactly when a pixel is brighter than 0.6 (the dog blob is 220/255,
    the cat blob 110/255, the background below 60/255): one channel carries it through every layer."""
    import keras

    from catdog.model.network import build_model

    model = build_model(image_size=32)
    convolutions = [layer for layer in model.layers if layer.name.startswith("conv2d")]
    for number, layer in enumerate(convolutions):
        kernel, bias = (np.zeros_like(w) for w in layer.get_weights())
        kernel[1, 1, 0, 0] = 1.0
        bias[0] = -0.6 if number == 0 else 0.0
        layer.set_weights([kernel, bias])
    dense = model.get_layer("flatten_dense")
    kernel, bias = (np.zeros_like(w) for w in dense.get_weights())
    kernel[0::256, 0] = 1.0  # channel 0 at every position of the flattened 4x4x256 map
    dense.set_weights([kernel, bias])
    hidden, output = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][1:]
    for layer, weight, bias in ((hidden, 1.0, 0.0), (output, 50.0, -1.0)):  # p(dog) = sigmoid(50 * blob - 1)
        kernel = np.zeros_like(layer.get_weights()[0])
        kernel[0, 0] = weight
        layer.set_weights([kernel, np.full_like(layer.get_weights()[1], bias)])
    return model


def always_dog_model():
    from catdog.model.network import build_model

    model = build_model(image_size=32)
    output = model.get_layer("p_dog")
    kernel, bias = output.get_weights()
    output.set_weights([np.zeros_like(kernel), np.full_like(bias, 4.0)])
    return model


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    project = make_project(root / "project")
    set_params(project, {"ingest": {"source": str(write_images(root / "photos", per_class=40)), "max_per_class": 40}})
    run(["dvc", "repro", "preprocess"], project)
    return project


def judge(project, production, candidate) -> tuple[dict, dict]:
    """A fresh registry with `production`, then the real evaluate and register stages on `candidate`."""
    shutil.rmtree(project / "data/registry", ignore_errors=True)
    registry = Registry(project / "data/registry")
    card = {
        "params": load_params(project / "params.yaml").to_dict(),
        "metrics": {"accuracy": 0.0},
        "training": {},
        "data_fingerprint": "test",
        "code_revision": "test",
    }
    production.save(project / "production.keras")
    registry.register(project / "production.keras", card, Verdict(True, "the test's production"), compared_with=None)
    (project / "data/model").mkdir(exist_ok=True)
    candidate.save(project / "data/model/model.keras")
    (project / "data/model/train.json").write_text(json.dumps({"data_fingerprint": "test"}))
    run(["catdog", "evaluate"], project)
    run(["catdog", "register"], project)
    decision = json.loads((project / "data/metrics/register.json").read_text())
    return decision, registry.card("v0002")


def test_a_truly_worse_candidate_stays_a_candidate(preprocessed):
    decision, card = judge(preprocessed, production=oracle_model(), candidate=always_dog_model())
    comparison = card["comparison"]
    assert comparison["production_accuracy"] == 1.0, "the oracle must be right on every test image"
    assert comparison["images"] >= 16 and comparison["only_production_right"] == comparison["images"] - sum(
        json.loads((preprocessed / "data/metrics/evaluate/metrics.json").read_text())["confusion"][k]
        for k in ("cat_as_cat", "dog_as_dog")
    )
    assert comparison["p_value"] < 0.05 and comparison["difference"] < 0
    assert not decision["production"] and decision["reason"].startswith("significantly worse than production")
    assert card["status"] == "candidate" and decision["production_version"] == "v0001"
    shown = run(["catdog", "models", "show", "v0002"], preprocessed).stdout
    assert "vs production   " in shown and "McNemar p = " in shown


def test_a_truly_better_candidate_replaces_production(preprocessed):
    decision, card = judge(preprocessed, production=always_dog_model(), candidate=oracle_model())
    assert card["comparison"]["candidate_accuracy"] == 1.0 and card["comparison"]["difference"] > 0
    assert decision["production"] and decision["reason"].startswith("not significantly worse than production")
    assert decision["production_version"] == "v0002"


def test_a_candidate_with_the_same_answers_replaces_production(preprocessed):
    decision, card = judge(preprocessed, production=oracle_model(), candidate=oracle_model())
    assert card["comparison"]["difference"] == 0 and card["comparison"]["p_value"] == 1.0
    assert decision["production"]


def test_a_missing_production_file_is_said_and_the_candidate_judged_on_min_accuracy(preprocessed):
    shutil.rmtree(preprocessed / "data/registry", ignore_errors=True)
    registry = Registry(preprocessed / "data/registry")
    oracle_model().save(preprocessed / "production.keras")
    card = {
        "params": load_params(preprocessed / "params.yaml").to_dict(),
        "metrics": {"accuracy": 0.0},
        "training": {},
        "data_fingerprint": "test",
        "code_revision": "test",
    }
    registry.register(preprocessed / "production.keras", card, Verdict(True, "test"), compared_with=None)
    (preprocessed / "data/registry/versions/v0001/model.keras").unlink()
    always_dog_model().save(preprocessed / "data/model/model.keras")
    run(["catdog", "evaluate"], preprocessed)
    run(["catdog", "register"], preprocessed)
    decision = json.loads((preprocessed / "data/metrics/register.json").read_text())
    assert decision["production"] and "production v0001 cannot be scored" in decision["reason"]
    assert "was changed or damaged" in decision["reason"]
