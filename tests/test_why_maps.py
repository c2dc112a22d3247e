"""Why-maps (Grad-CAM): they point where the answer came from, and the server returns them on request."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
from PIL import Image

from tests.test_serve import files, photo, random_model_server  # noqa: F401 (the shared server fixture)


def test_the_map_is_grad_cam_of_the_answer_and_empty_when_nothing_in_the_photo_matters():
    """Checked against Grad-CAM computed another way (a Keras sub-model from the input to the last
    convolution and the output, as in the keras-io example), for a 'dog' and a 'cat' answer; and a
    model whose answer ignores the photo has nothing to show."""
    import keras
    import tensorflow as tf

    from catdog.model.network import build_model
    from catdog.model.why_maps import grad_cam, overlay
    from tests.test_serve import constant_model

    keras.utils.set_random_seed(3)
    model = build_model(image_size=32)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    heat = grad_cam(model, images)
    assert heat.shape == (4, 32, 32) and heat.min() >= 0 and 0.5 < heat.max() <= 1

    conv = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    inputs = x = keras.Input((32, 32, 1))
    for layer in model.layers:  # the same layers as a functional graph
        x = layer(x)
        if layer is conv:
            last_features = x
    sub = keras.Model(inputs, [last_features, x])
    for threshold in (0.0, 1.01):  # every answer 'dog', then every answer 'cat'
        with tf.GradientTape() as tape:
            features, p = sub(images[..., None].astype("float32"))
            score = tf.reduce_sum(p if threshold == 0.0 else 1 - p)
        weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
        cam /= np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-8)
        expected = tf.image.resize(cam[..., None], (32, 32))[..., 0].numpy()
        np.testing.assert_allclose(grad_cam(model, images, threshold), expected, atol=1e-4)

    assert np.all(grad_cam(constant_model(2.0), images) == 0), "an answer that ignores the photo: no map"
    picture = overlay(images[0], heat[0])
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8


def test_predict_explain_returns_a_why_map_per_answered_image(random_model_server):
    url, _, _ = random_model_server
    plain = httpx.post(f"{url}/predict", files=files(("a.jpg", photo("dog", 1))), timeout=60).json()
    assert "why" not in plain["results"][0], "no map unless asked: it costs a backward pass"
    answer = httpx.post(
        f"{url}/predict?explain=1", files=files(("a.jpg", photo("dog", 1)), ("b.txt", b"nope")), timeout=120
    )
    good, bad = answer.json()["results"]
    assert answer.status_code == 422 and "why" not in bad
    assert good["p_dog"] == plain["results"][0]["p_dog"], "explaining does not change the answer"
    header, encoded = good["why"].split(",", 1)
    assert header == "data:image/png;base64"
    picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert picture.format == "PNG" and picture.size == (32, 32) and picture.mode == "RGB"
