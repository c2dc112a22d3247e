"""The spec CNN: 256x256x1 grayscale in, p(dog) out. 33,932,545 parameters at the defaults."""

from __future__ import annotations

import keras
from keras import layers


def build_model(image_size: int = 256, learning_rate: float = 0.001, dropout: float = 0.5) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 1), name="grayscale_0_255"),
            layers.Rescaling(1.0 / 255, name="scale_to_unit"),  # the saved model takes raw 0-255 pixels
            layers.Conv2D(64, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(2),
            layers.Conv2D(256, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(64, activation="relu"),
            layers.Dense(1, activation="sigmoid", name="p_dog"),
        ],
        name="catdog_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load_model(path) -> keras.Model:
    """Load a saved .keras model with safe mode on: the file cannot run code (no lambdas)."""
    return keras.saving.load_model(path, safe_mode=True)
