"""PNG plots people look at instead of reading numbers (rendered locally with matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from catdog.core.files import atomic_path  # noqa: E402


def save_figure(figure, target: Path) -> None:
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def training_curves(histories: dict[str, pd.DataFrame | None], target: Path) -> None:
    """Loss and accuracy per epoch, train and val; several runs by name (first dashed)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    runs = [(name, frame) for name, frame in histories.items() if frame is not None]
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for i, (name, frame) in enumerate(runs):
            style = "--" if i < len(runs) - 1 else "-"
            suffix = f" ({name})" if len(runs) > 1 else ""
            axis.plot(frame["epoch"], frame[metric], "o" + style, label=f"train {metric}{suffix}")
            if frame[f"val_{metric}"].notna().any():
                axis.plot(frame["epoch"], frame[f"val_{metric}"], "s" + style, label=f"val {metric}{suffix}")
        if runs:
            _mark_image_sizes(axis, runs[-1][1])
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, target)


def _mark_image_sizes(axis, history: pd.DataFrame) -> None:
    """Progressive resizing: a dotted line and the size where each phase starts."""
    if "image_size" not in history or history["image_size"].nunique() < 2:
        return
    starts = history[history["image_size"].ne(history["image_size"].shift())]
    for epoch, size in zip(starts["epoch"], starts["image_size"]):
        axis.axvline(epoch - 0.5, color="gray", linestyle=":", linewidth=1)
        axis.annotate(
            f"{int(size)} px",
            (epoch - 0.4, 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=8,
            color="gray",
        )


def _draw_confusion(axis, cells: np.ndarray, title: str) -> None:
    axis.imshow(cells, cmap="Blues")
    for (row, col), count in np.ndenumerate(cells):
        axis.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > cells.max() / 2 else "black",
            fontsize=14,
        )
    axis.set_xticks([0, 1], ["cat", "dog"])
    axis.set_yticks([0, 1], ["cat", "dog"])
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title)


def confusion_matrix(confusion: dict, target: Path) -> None:
    cells = np.array(
        [[confusion["cat_as_cat"], confusion["cat_as_dog"]], [confusion["dog_as_cat"], confusion["dog_as_dog"]]]
    )
    figure, axis = plt.subplots(figsize=(3.8, 3.4))
    _draw_confusion(axis, cells, "confusion matrix (test)")
    save_figure(figure, target)


def roc(curves: dict[str, pd.DataFrame | None], target: Path) -> None:
    """ROC curves by label (the last solid, earlier ones dashed)."""
    figure, axis = plt.subplots(figsize=(4.2, 4))
    shown = [(label, curve) for label, curve in curves.items() if curve is not None]
    for i, (label, curve) in enumerate(shown):
        axis.plot(curve["fpr"], curve["tpr"], "--" if i < len(shown) - 1 else "-", label=label)
    axis.plot([0, 1], [0, 1], ":", color="gray", linewidth=1)
    axis.set_xlabel("false positive rate (cats called dog)")
    axis.set_ylabel("true positive rate (dogs found)")
    axis.set_title("ROC (test)")
    axis.legend(loc="lower right")
    save_figure(figure, target)


def misclassified_grid(images: np.ndarray, rows: pd.DataFrame, target: Path, columns: int = 4) -> None:
    count = len(rows)
    grid_rows = max(1, math.ceil(count / columns))
    figure, axes = plt.subplots(grid_rows, columns, figsize=(2.4 * columns, 2.6 * grid_rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, (_, row) in zip(axes.flat, images, rows.iterrows()):
        axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"{row['actual']} as {row['predicted']}\np(dog)={row['p_dog']:.2f}", fontsize=9)
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    figure.suptitle("misclassified test images")
    save_figure(figure, target)


def compare_confusion(old: pd.DataFrame | None, new: pd.DataFrame, base: str, target: Path) -> None:
    frames = [(base, old), ("this change", new)] if old is not None else [("this change", new)]
    figure, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 3.6), squeeze=False)
    for axis, (name, frame) in zip(axes.flat, frames):
        cells = (
            pd.crosstab(frame["actual"], frame["predicted"])
            .reindex(index=["cat", "dog"], columns=["cat", "dog"], fill_value=0)
            .to_numpy()
        )
        _draw_confusion(axis, cells, f"confusion ({name})")
    save_figure(figure, target)
