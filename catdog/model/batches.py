"""The input pipeline: batches of uint8 images read from shards, downscaled for the warm-up
sizes and augmented for training. Augmentation happens here, not in the model, so that the
saved model stays the spec's."""

from __future__ import annotations

import math
import threading
import time

import keras
import numpy as np

from catdog.data.shards import ShardReader

ASPECT_RANGE = (3 / 4, 4 / 3)


@keras.saving.register_keras_serializable(package="catdog")
class RandomResizedCrop(keras.layers.Layer):
    """A random crop of at least `min_area` of the image (aspect 3/4 to 4/3), resized back to the
    full size (Inception-style scale augmentation: the animal at many sizes and positions)."""

    def __init__(self, min_area: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.min_area, self.seed = min_area, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        import tensorflow as tf

        if not training:
            return images
        n = tf.shape(images)[0]
        area = keras.random.uniform((n,), self.min_area, 1.0, seed=self.seed_generator)
        log_aspect = keras.random.uniform(
            (n,), math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1]), seed=self.seed_generator
        )
        height = tf.minimum(tf.sqrt(area / tf.exp(log_aspect)), 1.0)
        width = tf.minimum(tf.sqrt(area * tf.exp(log_aspect)), 1.0)
        top = keras.random.uniform((n,), seed=self.seed_generator) * (1.0 - height)
        left = keras.random.uniform((n,), seed=self.seed_generator) * (1.0 - width)
        boxes = tf.stack([top, left, top + height, left + width], axis=1)
        return tf.image.crop_and_resize(images, boxes, tf.range(n), tf.shape(images)[1:3])

    def get_config(self):
        return {**super().get_config(), "min_area": self.min_area, "seed": self.seed}


def augmentation(seed: int, crop_min_area: float | None = None) -> keras.Sequential:
    """Random changes a photo can undergo and stay the same animal. Pixel values stay in 0-255.
    With `crop_min_area`, random resized crops take the place of zoom and translation."""
    layers = keras.layers
    geometry = (
        [RandomResizedCrop(crop_min_area, seed=seed)]
        if crop_min_area is not None
        else [
            layers.RandomZoom(0.15, fill_mode="reflect", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
        ]
    )
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.05, fill_mode="reflect", seed=seed),
            *geometry,
            layers.RandomContrast(0.2, seed=seed),
        ],
        name="augmentation",
    )


def downscale(images: np.ndarray, size: int) -> np.ndarray:
    """(n, S, S, 1) images to (n, size, size, 1) float32 by averaging f x f blocks (S = f * size)."""
    n, side = images.shape[:2]
    factor = side // size
    return images.reshape(n, size, factor, size, factor, 1).mean(axis=(2, 4), dtype=np.float32)


class ShardBatches(keras.utils.PyDataset):
    """(uint8 images, p(dog) labels) batches read from shards; reshuffled each epoch by seed."""

    def __init__(
        self,
        reader: ShardReader,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        start_epoch: int = 0,
        augment: keras.Sequential | None = None,
        image_size: int | None = None,
    ):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
        self.reader, self.batch_size, self.shuffle, self.seed = reader, batch_size, shuffle, seed
        self.augment, self.image_size = augment, image_size
        self.epoch = start_epoch  # a resumed run gets the same order per epoch as an uninterrupted one
        self.order = self._order()
        self.made: list[float] = []  # when each batch the worker thread made was ready, in order (train.InputWait)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.reader))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.reader))

    def __len__(self) -> int:
        return math.ceil(len(self.reader) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.reader.images(rows)
        if self.image_size is not None and self.image_size != images.shape[1]:
            images = downscale(images, self.image_size)
        if self.augment is not None:
            images = keras.ops.convert_to_numpy(self.augment(images.astype(np.float32), training=True))
        if threading.current_thread() is not threading.main_thread():  # not Keras' look at the first batches
            self.made.append(time.perf_counter())
        return images, self.reader.labels[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
