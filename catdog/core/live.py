"""Metrics through DVCLive, the DVC ecosystem's experiment logger: `dvc plots show`,
`dvc exp show` and the VS Code extension read its folder (metrics.json, plots/metrics/*.tsv)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def open_live(folder: Path):
    """A DVCLive logger writing into `folder` only: it neither edits dvc.yaml nor saves a DVC
    experiment (a stage's or a trial's folder is declared, or read, by whoever owns it)."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class FolderLive(Live):
        def _init_dvc(self):
            try:
                super()._init_dvc()
            except SCMError:  # DVCLive 3.49 fails in a git repository with no commit yet; nothing here needs git
                self._dvc_repo = None

    return FolderLive(str(folder), dvcyaml=None, save_dvc_exp=False, report=None)


def live_name(key: str) -> str:
    """Keras' log key as DVCLive names it: val_loss -> eval/loss, loss -> train/loss. The rate is
    optimizer/learning_rate: `dvc exp show` would otherwise show it and the param
    train.learning_rate under one ambiguous name."""
    if key == "learning_rate":
        return "optimizer/learning_rate"
    return f"eval/{key[4:]}" if key.startswith("val_") else f"train/{key}"


HISTORY_COLUMNS = ["epoch", "image_size", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]


def read_history(folder: Path) -> pd.DataFrame | None:
    """A DVCLive folder's per-epoch curves as one frame: epoch, image_size, loss, accuracy,
    val_loss, val_accuracy, learning_rate (None where the folder has none)."""
    return history_frame(lambda name: _tsv(folder / "plots" / "metrics" / f"{name}.tsv"))


def history_frame(read) -> pd.DataFrame | None:
    """The same from any reader of `train/loss`-style names (a file at a git revision, say)."""
    columns = {}
    for key in HISTORY_COLUMNS[1:]:
        frame = read(live_name(key))
        if frame is not None:
            columns[key] = frame.set_index("step").iloc[:, -1]
    if not columns:
        return None
    history = pd.DataFrame(columns).rename_axis("epoch").reset_index()
    return history.reindex(columns=HISTORY_COLUMNS)


def _tsv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t") if path.exists() else None
