"""The time-to-accuracy levers (decay to zero, label smoothing, weight averaging, random resized
crops, flip test-time augmentation): off by default, each does what it says, alone or together."""

import json
import math
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from catdog.core.config import EvaluateParams, ParamsError, TrainParams, parse_params  # noqa: E402
from catdog.core.live import read_history  # noqa: E402
from catdog.model.batches import RandomResizedCrop, augmentation  # noqa: E402
from catdog.model.callbacks import DecayToZero, TimeBudget, decay_factor  # noqa: E402
from catdog.model.network import build_model, load_model, predict_p_dog  # noqa: E402
from tests.conftest import MAX_PIXELS, REPO, make_project, run  # noqa: E402


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("levers") / "project")  # 32 px images
    run(["dvc", "repro", "preprocess"], project)
    return project / "data" / "preprocessed"


def test_levers_are_off_by_default():
    params = TrainParams()
    assert params.lr_schedule == "constant" and params.label_smoothing == 0.0
    assert params.ema_momentum is None and params.random_resized_crop is None
    assert not EvaluateParams().flip_tta
    model = build_model(32)
    assert model.loss == "binary_crossentropy" and not model.optimizer.use_ema


@pytest.mark.parametrize(
    "train, fix",
    [
        ({"lr_schedule": "linear", "reduce_lr_patience": 2}, "reduce_lr_patience"),
        ({"ema_momentum": 0.99, "early_stopping_patience": 2}, "early_stopping_patience"),
        ({"random_resized_crop": 0.35}, "train.augment"),
    ],
)
def test_levers_that_would_undo_each_other_are_refused(train, fix):
    with pytest.raises(ParamsError, match=fix):
        parse_params({"train": train})


def test_decay_reaches_zero_at_the_end():
    assert decay_factor("linear", 0.0) == 1.0 and decay_factor("cosine", 0.0) == 1.0
    assert decay_factor("linear", 0.25) == 0.75 and math.isclose(decay_factor("cosine", 0.5), 0.5)
    assert decay_factor("linear", 1.0) == 0.0 and math.isclose(decay_factor("cosine", 1.0), 0.0, abs_tol=1e-12)
    assert decay_factor("linear", 1.7) == 0.0  # past the budget (the last epoch overran): no negative rate


def test_decay_follows_the_planned_steps_not_the_clock():
    model = build_model(16, learning_rate=0.01)
    decay = DecayToZero("linear", steps_per_epoch=10, total_steps=40, base_rate=0.01)
    decay.set_model(model)
    decay.on_epoch_begin(3)
    decay.on_train_batch_begin(0)  # 30 of the 40 planned steps done
    assert math.isclose(float(model.optimizer.learning_rate), 0.0025, rel_tol=0.01)


def test_the_budget_already_spent_survives_a_resume(tmp_path):
    spent = tmp_path / "budget.json"
    first = TimeBudget(minutes=1.0, spent_file=spent)
    first.started -= 30
    first.on_epoch_begin(0)
    first.on_epoch_end(0)  # an epoch ends 30 s into the budget; then the run is killed
    resumed = TimeBudget(minutes=1.0, spent_file=spent)
    assert 29 < time.perf_counter() - resumed.started < 36
    assert json.loads(spent.read_text())["seconds"] >= 30


def test_random_resized_crop_zooms_into_part_of_the_image():
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (64, 1))[None, :, :, None].repeat(4, axis=0)
    cropped = keras.ops.convert_to_numpy(RandomResizedCrop(0.3, seed=1)(ramp, training=True))
    assert cropped.shape == ramp.shape
    assert cropped.min() >= 0 and cropped.max() <= 255
    # a crop of the horizontal ramp spans a narrower range of values than the whole ramp
    assert all(image.max() - image.min() < 250 for image in cropped)
    assert keras.ops.convert_to_numpy(RandomResizedCrop(0.3)(ramp, training=False)).tolist() == ramp.tolist()
    names = [layer.__class__.__name__ for layer in augmentation(0, crop_min_area=0.35).layers]
    assert "RandomResizedCrop" in names and "RandomZoom" not in names and "RandomTranslation" not in names


def test_flip_tta_averages_each_image_with_its_mirror_image():
    keras.utils.set_random_seed(0)
    model = build_model(32)
    batch = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 1)).astype(np.uint8)
    plain, mirrored = predict_p_dog(model, [batch]), predict_p_dog(model, [batch[:, :, ::-1]])
    assert not np.allclose(plain, mirrored)  # the untrained model is not symmetric, so this tests something
    np.testing.assert_allclose(predict_p_dog(model, [batch], flip=True), (plain + mirrored) / 2, rtol=1e-5)


def test_training_with_every_lever(preprocessed, tmp_path):

    from catdog.stages import train

    params = TrainParams(
        epochs=3,
        batch_size=4,
        learning_rate=0.01,
        lr_schedule="linear",
        label_smoothing=0.1,
        ema_momentum=0.5,
        augment=True,
        random_resized_crop=0.5,
    )
    train.run(params, preprocessed, tmp_path / "model", tmp_path / "checkpoints", tmp_path / "metrics")
    history = read_history(tmp_path / "metrics/train")
    rates = history["learning_rate"].tolist()  # the rate after each epoch's last step
    assert rates == sorted(rates, reverse=True) and rates[0] < 0.01 and rates[-1] < 0.01 / 10
    model = load_model(tmp_path / "model/model.keras")
    assert model.loss.get_config()["label_smoothing"] == 0.1
    averages = model.optimizer._model_variables_moving_average
    assert len(averages) == len(model.trainable_weights)
    for weight, average in zip(model.trainable_weights, averages):  # the saved weights are the average
        np.testing.assert_allclose(weight.numpy(), average.numpy(), err_msg=weight.path)


def test_evaluate_and_predict_use_flip_tta_as_the_model_was_evaluated(preprocessed, tmp_path):
    from catdog.data.shards import ShardReader
    from catdog.stages import evaluate

    keras.utils.set_random_seed(0)
    build_model(32).save(tmp_path / "model.keras")
    scores = {}
    for flip in (False, True):
        evaluate.run(
            EvaluateParams(flip_tta=flip),
            tmp_path / "model.keras",
            preprocessed,
            tmp_path / str(flip),
            tmp_path / f"plots-{flip}",
        )
        scores[flip] = pd_read(tmp_path / str(flip) / "confusion.csv")["p_dog"].to_numpy()
    test = ShardReader(preprocessed / "test")
    model = load_model(tmp_path / "model.keras")
    images = test.images(np.arange(len(test)))
    expected = (predict_p_dog(model, [images]) + predict_p_dog(model, [images[:, :, ::-1]])) / 2
    np.testing.assert_allclose(scores[True], expected.round(4), atol=1e-4)
    assert not np.allclose(scores[True], scores[False])


def pd_read(path):
    import pandas as pd

    return pd.read_csv(path)


def test_predict_follows_the_models_own_flip_tta_setting(tmp_path):
    from catdog.core.config import Params
    from catdog.registry.gate import Verdict
    from catdog.registry.store import Registry
    from catdog.serving.predict import load_for_prediction, predict_files
    from tests.conftest import image_bytes

    registry = Registry(tmp_path / "registry")
    for seed, flip in ((0, False), (1, True)):
        keras.utils.set_random_seed(seed)
        build_model(32).save(tmp_path / f"model-{seed}.keras")
        card = {
            "params": {**Params().to_dict(), "evaluate": EvaluateParams(flip_tta=flip).__dict__},
            "metrics": {"accuracy": 0.9},
            "training": {},
            "data_fingerprint": "test",
            "code_revision": "test",
        }
        registry.register(
            tmp_path / f"model-{seed}.keras", card, Verdict(True, "test"), compared_with=registry.state()["production"]
        )
    assert not load_for_prediction(registry, "v0001").flip_tta and load_for_prediction(registry, "v0002").flip_tta

    photo = tmp_path / "dog.jpg"
    photo.write_bytes(image_bytes("dog", (40, 40), "JPEG"))
    model = load_model(tmp_path / "model-1.keras")
    answers = {
        flip: predict_files(model, [photo], 32, flip=flip, max_pixels=MAX_PIXELS)[0].p_dog for flip in (False, True)
    }
    assert answers[True] != answers[False]
    for flag, flip in (("--flip-tta", True), ("--no-flip-tta", False)):
        out = run(
            ["catdog", "predict", "--json", "--model", str(tmp_path / "model-1.keras"), flag, str(photo)], tmp_path
        ).stdout
        assert json.loads(out)[0]["p_dog"] == pytest.approx(answers[flip], abs=1e-5)


@pytest.mark.slow
def test_the_lever_harness_runs_each_configuration_and_tabulates(tmp_path):
    """bench/levers.py --smoke: the real harness (dvc repro per configuration) on the tiny budget."""
    out = tmp_path / "levers.json"
    printed = run(
        [
            "python",
            "bench/levers.py",
            "--smoke",
            "--seeds",
            "3",
            "--levers",
            "label_smoothing",
            "flip_tta",
            "baseline",
            "--out",
            str(out),
            "--work",
            str(tmp_path),
        ],
        REPO,
    ).stdout
    result = json.loads(out.read_text())
    # scoring-only levers right after the baseline, whose training DVC can skip only then
    assert [r["lever"] for r in result["runs"]] == ["baseline", "flip_tta", "label_smoothing"]
    baseline, flipped, _ = result["runs"]
    assert flipped["stage_seconds"] < baseline["stage_seconds"]  # it reused the baseline's training
    assert flipped["whole_run_minutes"] > baseline["whole_run_minutes"]  # ... and counts it in its whole run
    assert "| baseline | " in printed and "| flip_tta | " in printed and "missed" in printed
