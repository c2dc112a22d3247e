"""Per-epoch metrics through DVCLive, the DVC ecosystem's experiment logger: `dvc plots show`,
`dvc exp show` and the VS Code extension read its folder (metrics.json, plots/metrics/*.tsv)."""

from __future__ import annotations

from pathlib import Path

import keras


def open_live(folder: Path):
    """A DVCLive logger writing into `folder` only: it neither edits dvc.yaml nor saves a DVC
    experiment (a stage's or a trial's folder is declared, or read, by whoever owns it)."""
    from dvclive import Live

    return Live(str(folder), dvcyaml=None, save_dvc_exp=False, report=None)


def live_name(key: str) -> str:
    """Keras' log key as DVCLive names it: val_loss -> eval/loss, loss -> train/loss."""
    return f"eval/{key[4:]}" if key.startswith("val_") else f"train/{key}"


class LiveLog(keras.callbacks.Callback):
    """Each epoch's Keras metrics, the learning rate and the image size, at step = the epoch
    (counted from 1, across every phase of progressive resizing)."""

    def __init__(self, live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch, logs=None):
        self.log(epoch + 1, {**(logs or {}), "learning_rate": self.model.optimizer.learning_rate})
        self.live.log_metric("train/image_size", int(self.model.input_shape[1]))
        self.live.make_summary()

    def log(self, epoch: int, metrics: dict) -> None:
        self.live.step = epoch
        for key, value in metrics.items():
            if key not in ("epoch", "image_size"):
                self.live.log_metric(live_name(key), float(keras.ops.convert_to_numpy(value)))
