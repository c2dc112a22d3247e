"""The work budget: the schedule is a function of the params and the data, never of the host's speed;
the wall-clock limit is only a safety stop, and says so when it fires."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from catdog.core.config import ParamsError, TrainParams  # noqa: E402
from catdog.model.training import Phase, phases, planned_work  # noqa: E402
from tests.conftest import make_project, run  # noqa: E402

WARM = {"warmup_sizes": (64, 128), "warmup_epochs": (12, 5), "epochs": 4}


def test_a_budget_cuts_the_plan_in_order_keeping_an_epoch_at_full_size():
    # 100 images: a 64 px epoch costs 100/16, a 128 px one 100/4, a 256 px one 100 (images at full-size cost)
    plan = phases(TrainParams(**WARM, budget_images=12 * 100 // 16 + 5 * 100 // 4 + 2 * 100), 256, 100)
    assert [(p.image_size, p.epochs) for p in plan] == [(64, 12), (128, 5), (256, 2)]
    tight = phases(TrainParams(**WARM, budget_images=150), 256, 100)  # room for 8 at 64 px, then one at 256
    assert [(p.image_size, p.epochs) for p in tight] == [(64, 8), (256, 1)]
    assert tight[-1] == Phase(256, 8, 9, 0.001)
    assert phases(TrainParams(**WARM), 256, 100)[-1].last_epoch == 21  # no budget: the epochs as given


def test_the_plan_in_numbers():
    plan = phases(TrainParams(**WARM, budget_images=150), 256, 100)
    assert planned_work(plan, 100, 32) == {
        "epochs_by_size": {"64": 8, "256": 1},
        "steps": 9 * 4,
        "images_at_full_size_cost": 150,
    }


def test_a_budget_below_one_full_size_epoch_is_refused_with_the_fix():
    with pytest.raises(ParamsError, match=r"train.budget_images: 99 .* at least 100"):
        phases(TrainParams(budget_images=99), 256, 100)
    with pytest.raises(ParamsError, match="train.budget_images"):
        from catdog.core.config import parse_params

        parse_params({"train": {"budget_images": 0}})


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("budget") / "project")  # 32 px images
    run(["dvc", "repro", "preprocess"], project)
    return project / "data" / "preprocessed"


def _train(preprocessed, folder, params):
    from catdog.stages import train

    train.run(params, preprocessed, folder / "model", folder / "checkpoints", folder / "metrics")
    card = json.loads((folder / "model/train.json").read_text())
    return card, keras.saving.load_model(folder / "model/model.keras").get_weights()


def test_the_same_params_train_the_same_steps_and_weights_on_a_slower_host(preprocessed, tmp_path, monkeypatch):
    from catdog.model.batches import ShardBatches

    params = TrainParams(
        batch_size=4, warmup_sizes=(8, 16), warmup_epochs=(3, 2), epochs=3, budget_images=60, lr_schedule="linear"
    )
    fast, fast_weights = _train(preprocessed, tmp_path / "fast", params)
    make = ShardBatches.__getitem__

    def slowly(self, index):  # the input pipeline of a host three times slower
        import time

        time.sleep(0.03)
        return make(self, index)

    monkeypatch.setattr(ShardBatches, "__getitem__", slowly)
    slow, slow_weights = _train(preprocessed, tmp_path / "slow", TrainParams(**{**params.__dict__, "max_minutes": 60}))
    assert fast["planned_work"] == slow["planned_work"] and fast["epochs"] == slow["epochs"]
    assert slow["safety_stop"] is None
    assert fast["planned_work"]["images_at_full_size_cost"] <= 60
    for a, b in zip(fast_weights, slow_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_safety_stop_says_it_fired(preprocessed, tmp_path, capsys):
    params = TrainParams(batch_size=4, epochs=50, max_minutes=0.0001)  # 6 ms: no second epoch fits
    card, _ = _train(preprocessed, tmp_path, params)
    assert card["epochs"] < 50 and "train.max_minutes" in card["safety_stop"]
    assert "SAFETY STOP" in capsys.readouterr().out
