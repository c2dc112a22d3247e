import numpy as np
import pytest

keras = pytest.importorskip("keras")

from catdog.model.network import build_model  # noqa: E402


def test_default_model_is_exactly_the_spec():
    model = build_model()
    assert model.count_params() == 33_932_545
    assert model.input_shape == (None, 256, 256, 1)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.Rescaling)]
    expected = [
        ("Conv2D", (None, 256, 256, 64)),
        ("MaxPooling2D", (None, 128, 128, 64)),
        ("Conv2D", (None, 128, 128, 128)),
        ("MaxPooling2D", (None, 64, 64, 128)),
        ("Conv2D", (None, 64, 64, 256)),
        ("MaxPooling2D", (None, 32, 32, 256)),
        ("Flatten", (None, 262_144)),
        ("Dense", (None, 128)),
        ("Dropout", (None, 128)),
        ("Dense", (None, 64)),
        ("Dense", (None, 1)),
    ]
    assert [(type(layer).__name__, layer.output.shape) for layer in layers] == expected
    for conv in layers[0:6:2]:
        assert conv.kernel_size == (3, 3) and conv.padding == "same" and conv.activation.__name__ == "relu"
    for pool in layers[1:6:2]:
        assert pool.pool_size == (2, 2)
    assert [d.activation.__name__ for d in layers[7:11:3]] == ["relu", "sigmoid"]
    assert layers[9].activation.__name__ == "relu"
    assert layers[8].rate == 0.5
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    assert model.loss == "binary_crossentropy"


def test_pixel_scaling_is_inside_the_model():
    model = build_model(image_size=32)
    assert isinstance(model.layers[0], keras.layers.Rescaling)
    assert model.layers[0].scale == pytest.approx(1 / 255)


def test_one_training_step_at_256_works():
    model = build_model()
    x = np.random.default_rng(0).integers(0, 256, (4, 256, 256, 1)).astype(np.uint8)
    y = np.array([0, 1, 0, 1], np.float32)
    loss = model.train_on_batch(x, y)
    assert np.isfinite(np.asarray(loss)).all()
    p = model.predict(x, verbose=0)
    assert p.shape == (4, 1) and ((p >= 0) & (p <= 1)).all()


def test_predict_p_dog_batch_by_batch_equals_model_predict():
    from catdog.model.network import predict_p_dog

    model = build_model(image_size=32)
    images = np.random.default_rng(0).integers(0, 256, (13, 32, 32, 1), dtype=np.uint8)
    expected = model.predict(images, verbose=0).reshape(-1)
    got = predict_p_dog(model, (images[i : i + 4] for i in range(0, 13, 4)))  # the last batch is partial
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert predict_p_dog(model, []).shape == (0,)
