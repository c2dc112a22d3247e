"""Training options for real photos: off by default, and each does what it says."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from catdog.core.config import TrainParams  # noqa: E402
from catdog.core.live import read_history  # noqa: E402
from catdog.model.batches import ShardBatches, augmentation  # noqa: E402
from catdog.model.callbacks import optional_callbacks  # noqa: E402
from catdog.model.network import LayerScaledAdam, build_model, load_model  # noqa: E402
from catdog.model.training import class_weights  # noqa: E402


class _Reader:
    def __init__(self, n=8, side=32):
        rng = np.random.default_rng(0)
        self.data = rng.integers(0, 256, (n, side, side, 1), dtype=np.uint8)
        self.labels = np.array([0, 1] * (n // 2), np.float32)

    def __len__(self):
        return len(self.data)

    def images(self, rows):
        return self.data[rows]


def test_defaults_leave_every_option_off():
    params = TrainParams()
    assert not params.augment and params.class_weight == "none"
    assert params.early_stopping_patience is None and params.reduce_lr_patience is None
    assert optional_callbacks(params, has_validation=True) == []
    assert params.flatten_dense_lr_scale == 1.0
    assert not params.center_inputs and params.warmup_sizes == () and params.warmup_epochs == ()
    assert type(build_model(32).optimizer) is keras.optimizers.Adam  # the spec's plain Adam


def _one_step_deltas(scale: float) -> list[tuple[str, np.ndarray]]:
    keras.utils.set_random_seed(0)
    model = build_model(32, learning_rate=1e-3, dropout=0.0, flatten_dense_lr_scale=scale)
    before = [w.numpy() for w in model.trainable_weights]
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.integers(0, 256, (8, 32, 32, 1)).astype(np.float32), np.array([0, 1] * 4, np.float32))
    return [(w.path, w.numpy() - old) for w, old in zip(model.trainable_weights, before)]


def test_flatten_dense_lr_scale_slows_only_that_kernel():
    for (path, plain), (_, scaled) in zip(_one_step_deltas(1.0), _one_step_deltas(0.01), strict=True):
        if path == "catdog_cnn/flatten_dense/kernel":
            np.testing.assert_allclose(scaled, plain * 0.01, rtol=1e-3, atol=1e-8)
            assert np.abs(plain).max() > 1e-4  # it did move (Adam's first step: ~lr per weight)
        else:
            np.testing.assert_allclose(scaled, plain, atol=1e-7, err_msg=path)


def test_scaled_optimizer_survives_save_and_safe_load(tmp_path):
    model = build_model(32, flatten_dense_lr_scale=0.02)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")  # safe mode: the class is registered, not code in the file
    assert isinstance(loaded.optimizer, LayerScaledAdam)
    assert loaded.optimizer.lr_scales == {"catdog_cnn/flatten_dense/kernel": 0.02}


def test_augmentation_changes_images_but_not_labels_or_range():
    reader = _Reader()
    plain = ShardBatches(reader, 8, shuffle=False)[0]
    augmented = ShardBatches(reader, 8, shuffle=False, augment=augmentation(seed=1))[0]
    assert augmented[0].shape == plain[0].shape
    assert (augmented[1] == plain[1]).all()
    assert not np.allclose(augmented[0], plain[0])
    assert augmented[0].min() >= 0 and augmented[0].max() <= 255


def test_early_stopping_restores_the_best_epoch_and_lr_is_reduced_on_plateau():
    callbacks = optional_callbacks(TrainParams(early_stopping_patience=3, reduce_lr_patience=2), has_validation=True)
    stopping, plateau = callbacks
    assert isinstance(stopping, keras.callbacks.EarlyStopping) and stopping.restore_best_weights
    assert stopping.patience == 3 and stopping.monitor == "val_loss"
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau) and plateau.patience == 2
    assert optional_callbacks(TrainParams(early_stopping_patience=3), has_validation=False) == []


class _StubModel:
    stop_training = False


def test_balanced_class_weights():
    assert class_weights(np.array([0, 0, 0, 1])) == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    assert class_weights(np.array([0, 1, 0, 1])) == {0: 1.0, 1: 1.0}


def test_time_budget_stops_when_the_next_epoch_would_not_fit():
    from catdog.model.callbacks import TimeBudget

    budget = TimeBudget(minutes=0.001)  # 60 ms
    budget.set_model(_StubModel())
    budget.on_epoch_begin(0)
    budget.on_epoch_end(0)
    assert not budget.model.stop_training  # the first epoch took ~0 s: another fits
    import time

    time.sleep(0.05)
    budget.on_epoch_begin(1)
    time.sleep(0.02)
    budget.on_epoch_end(1)
    assert budget.model.stop_training


def test_best_epoch_is_restored_even_when_epochs_run_out_first():
    from catdog.model.callbacks import restore_best_epoch

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    stopping = keras.callbacks.EarlyStopping(restore_best_weights=True)
    stopping.best_weights = [np.ones((2, 1)), np.full((1,), 7.0)]
    restore_best_epoch(model, [stopping])
    assert model.get_weights()[1][0] == 7.0


def test_downscale_averages_blocks():
    from catdog.model.batches import downscale

    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    small = downscale(images, 2)
    assert small.shape == (2, 2, 2, 1) and small.dtype == np.float32
    assert small[0, 0, 0, 0] == np.mean([0, 1, 4, 5]) and small[1, 1, 1, 0] == np.mean([26, 27, 30, 31])
    batch = ShardBatches(_Reader(side=32), 8, shuffle=False, image_size=16)[0][0]
    assert batch.shape == (8, 16, 16, 1)


def test_phases_put_the_warm_up_sizes_before_the_full_size():
    from catdog.model.training import Phase, phases

    params = TrainParams(
        epochs=2, learning_rate=1e-3, warmup_sizes=(16, 32), warmup_epochs=(3, 1), warmup_learning_rate=5e-4
    )
    assert phases(params, 64) == [Phase(16, 0, 3, 5e-4), Phase(32, 3, 4, 5e-4), Phase(64, 4, 6, 1e-3)]
    assert phases(TrainParams(epochs=2), 256) == [Phase(256, 0, 2, 1e-3)]  # the spec run: one phase


def test_carried_weights_compute_the_same_on_an_upsampled_feature_map():
    from catdog.model.network import carry_weights

    keras.utils.set_random_seed(0)
    small, large = build_model(32), build_model(64)
    carry_weights(small, large)
    for old, new in zip(small.layers, large.layers):
        if old.name != "flatten_dense":
            for a, b in zip(old.get_weights(), new.get_weights()):
                np.testing.assert_array_equal(a, b)
    features = np.random.default_rng(0).random((3, 4, 4, 256), np.float32)  # what Flatten sees at 32 px
    upsampled = features.repeat(2, axis=1).repeat(2, axis=2)  # ... and at 64 px
    before = small.get_layer("flatten_dense")(features.reshape(3, -1))
    after = large.get_layer("flatten_dense")(upsampled.reshape(3, -1))
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)


def test_centered_inputs_scale_pixels_to_plus_minus_one():
    scaling = build_model(32, center_inputs=True).layers[0]
    np.testing.assert_allclose(scaling(np.array([0.0, 127.5, 255.0])), [-1.0, 0.0, 1.0])
    assert build_model(32).layers[0](np.array([255.0])).numpy()[0] == 1.0


def test_time_budget_expects_a_larger_next_epoch_to_take_longer():
    import time

    from catdog.model.callbacks import TimeBudget

    budget = TimeBudget(minutes=0.002, epoch_sizes=[16, 64])  # 120 ms; a 64 px epoch costs 16x a 16 px one
    budget.set_model(_StubModel())
    budget.on_epoch_begin(0)
    time.sleep(0.02)
    budget.on_epoch_end(0)  # 20 ms at 16 px: the next one at 64 px would take ~320 ms
    assert budget.model.stop_training and budget.exhausted


def test_time_budget_ends_the_warm_up_to_keep_time_for_an_epoch_at_full_size():
    from catdog.model.callbacks import TimeBudget

    def budget_after_one_warm_up_second(minutes):
        budget = TimeBudget(minutes, epoch_sizes=[16, 16, 16, 64])  # a 64 px epoch costs 16x a 16 px one
        budget.set_model(_StubModel())
        budget.on_epoch_begin(0)
        budget.started -= 1.0
        budget.epoch_started -= 1.0  # the first epoch "took" 1 s
        budget.on_epoch_end(0)
        return budget

    roomy = budget_after_one_warm_up_second(minutes=20 / 60)  # 1 s + 1 s (16 px) + 16 s (64 px) fit in 20 s
    assert not roomy.model.stop_training
    tight = budget_after_one_warm_up_second(minutes=17.5 / 60)  # only 1 s + 16 s fit: skip to 64 px
    assert tight.model.stop_training and tight.warmup_over and not tight.exhausted
    hopeless = budget_after_one_warm_up_second(minutes=5 / 60)  # no 64 px epoch fits: keep warming up
    assert not hopeless.model.stop_training


def test_time_budget_recovers_from_a_passing_slowdown():
    from catdog.model.callbacks import TimeBudget

    budget = TimeBudget(minutes=90 / 60, epoch_sizes=[16, 16, 16, 16, 64])  # a 64 px epoch costs 16x a 16 px one
    budget.set_model(_StubModel())
    for epoch, seconds in enumerate([1.0, 5.0, 1.0]):  # the second epoch shared the machine with another job
        budget.on_epoch_begin(epoch)
        budget.started -= seconds
        budget.epoch_started -= seconds
        budget.on_epoch_end(epoch)
        # Planning from the slowest epoch (80 s at 64 px) would end the warm-up after the second.
        assert not budget.model.stop_training and not budget.warmup_over
    assert budget._per_pixel() * 64**2 == pytest.approx(16.0, rel=0.01)


def test_a_warm_up_ends_even_when_noise_moved_the_full_size_estimate_past_its_window():
    from catdog.model.callbacks import TimeBudget

    budget = TimeBudget(minutes=100.5 / 60, epoch_sizes=[16] * 8 + [64])  # a 64 px epoch costs 16x a 16 px one
    budget.set_model(_StubModel())
    for epoch, seconds in enumerate([5.0, 5.0, 5.0, 6.0]):
        budget.on_epoch_begin(epoch)
        budget.started -= seconds
        budget.epoch_started -= seconds
        budget.on_epoch_end(epoch)
        # After the third epoch (15 s used) one more warm-up epoch and the 80 s full one still fit;
        # after the fourth (21 s) the full one alone no longer does, though it would have at 15 s.
        assert budget.warmup_over == (epoch == 3) and budget.model.stop_training == (epoch == 3)
    assert not budget.exhausted


def test_a_warm_up_cut_short_by_the_budget_still_ends_with_an_epoch_at_full_size(tmp_path, monkeypatch):

    from catdog.model import training
    from catdog.stages import train
    from tests.conftest import make_project, run

    project = make_project(tmp_path / "project")  # 32 px images
    run(["dvc", "repro", "preprocess"], project)
    monkeypatch.setattr(training.TimeBudget, "_fits", lambda self, *sizes, **_: len(sizes) == 1)  # one epoch, never two
    params = TrainParams(epochs=1, batch_size=4, warmup_sizes=(8, 16), warmup_epochs=(3, 2), max_minutes=60)
    train.run(params, project / "data/preprocessed", tmp_path / "model", tmp_path / "checkpoints", tmp_path / "metrics")
    history = read_history(tmp_path / "metrics/train")
    assert history["epoch"].tolist() == [1, 6] and history["image_size"].tolist() == [8, 32]
    assert load_model(tmp_path / "model/model.keras").input_shape == (None, 32, 32, 1)


class _SlowBatches(ShardBatches):
    """Batches that take `delay` seconds each to make."""

    def __init__(self, delay: float, **kwargs):
        super().__init__(_Reader(n=16, side=16), 4, shuffle=False, **kwargs)
        self.delay = delay

    def __getitem__(self, index):
        import time

        time.sleep(self.delay)
        return super().__getitem__(index)


def test_input_wait_is_the_share_of_step_time_spent_waiting_for_batches():
    from catdog.model.callbacks import InputWait

    shares = {}
    for delay in (0.0, 0.25):
        keras.utils.set_random_seed(0)
        model, batches = build_model(16), _SlowBatches(delay)
        wait = InputWait(batches)
        model.fit(batches, epochs=2, callbacks=[wait], verbose=0)
        shares[delay] = wait.share
    assert shares[0.25] > 0.5  # the 16 px step takes milliseconds: it waits for almost every batch
    assert shares[0.0] < shares[0.25] / 2
