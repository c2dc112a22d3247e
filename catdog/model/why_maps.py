"""Why-maps: where in a photo the model looked for its answer (Grad-CAM on the last convolution).

For each image, the gradient of the answer's probability (p_dog for "dog", 1 - p_dog for "cat")
with respect to the last Conv2D's feature maps, averaged over space, weights those maps; their
weighted sum, rectified and scaled to 0..1, is upsampled to the input and laid over the photo.
Computed on request (`/predict?explain=1`, the labelling view, `catdog report`), never on the
serving hot path: it costs about one extra forward and backward pass per image.
"""

from __future__ import annotations

import io

import numpy as np


def grad_cam(model, images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N, H, W) uint8 images -> (N, H, W) float32 heat maps, 0..1, for the answer the model gives."""
    import keras
    import tensorflow as tf

    layers = model.layers
    last_conv = max(i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D))
    x = tf.convert_to_tensor(images.reshape(*images.shape[:3], 1), tf.float32)
    with tf.GradientTape() as tape:
        h = x
        for layer in layers[: last_conv + 1]:
            h = layer(h, training=False)
        features = h
        tape.watch(features)
        for layer in layers[last_conv + 1 :]:
            h = layer(h, training=False)
        p_dog = tf.cast(tf.reshape(h, [-1]), tf.float32)
        answer = tf.reduce_sum(tf.where(p_dog >= threshold, p_dog, 1.0 - p_dog))  # images are independent
    gradients = tf.cast(tape.gradient(answer, features), tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1))
    cam = cam / tf.maximum(tf.reduce_max(cam, axis=(1, 2), keepdims=True), 1e-8)
    return tf.image.resize(cam[..., tf.newaxis], images.shape[1:3], method="bilinear")[..., 0].numpy()


def overlay(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A grayscale image and its heat map -> an RGB uint8 image, the map in the 'jet' colours."""
    from matplotlib import colormaps

    gray = np.repeat(pixels[..., np.newaxis].astype(np.float32), 3, axis=-1)
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * gray + alpha * colours, 0, 255).astype(np.uint8)


def overlay_png(pixels: np.ndarray, heat: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(overlay(pixels, heat), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def misclassified_grid(pixels: np.ndarray, heat: np.ndarray, rows, target, columns: int = 4) -> None:
    """Each misclassified test photo beside where the model looked for its wrong answer."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from catdog.core.files import atomic_path

    count = len(rows)
    grid_rows = max(1, math.ceil(count / columns))
    figure, axes = plt.subplots(grid_rows, 2 * columns, figsize=(2.2 * 2 * columns, 2.5 * grid_rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for i, (image, hot, (_, row)) in enumerate(zip(pixels, heat, rows.iterrows())):
        photo, why = axes.flat[2 * i], axes.flat[2 * i + 1]
        photo.imshow(image, cmap="gray", vmin=0, vmax=255)
        photo.set_title(f"{row['actual']} as {row['predicted']}\np(dog)={row['p_dog']:.2f}", fontsize=8)
        why.imshow(overlay(image, hot))
        why.set_title("where it looked", fontsize=8)
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    figure.suptitle("misclassified test photos and their why-maps (Grad-CAM)")
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
