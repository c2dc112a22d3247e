"""Stage 7 of 8, evaluate: the trained model on the held-out test split.

Reads  data/model/model.keras, data/preprocessed/test/, data/testset/test/, data/metrics/train/
       (the training curves).
Writes data/metrics/ (evaluate/metrics.json, confusion.csv, confusion_curated.csv, roc.csv),
       data/plots/.

Writes the metrics through DVCLive (evaluate/metrics.json, accuracy first: the spec's metric), the plot data DVC
renders (confusion.csv for the confusion template, roc.csv) and PNGs a person looks at:
training curves, confusion matrix, ROC curve and a grid of misclassified test images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from catdog.core.config import EvaluateParams, Params
from catdog.core.entry import stage_main
from catdog.core.files import atomic_path
from catdog.core.live import open_live, read_history
from catdog.core.paths import ProjectPaths
from catdog.data.shards import ShardReader

ECE_BINS = 10


def binary_metrics(y_true: np.ndarray, p_dog: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, precision/recall/F1 for 'dog', ROC AUC, log loss, per-class accuracy, ECE."""
    y_true = y_true.astype(int)
    y_pred = (p_dog >= threshold).astype(int)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    tn = int(((y_pred == 0) & (y_true == 0)).sum())
    fp = int(((y_pred == 1) & (y_true == 0)).sum())
    fn = int(((y_pred == 0) & (y_true == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    clipped = np.clip(p_dog, 1e-7, 1 - 1e-7)
    return {
        "accuracy": (tp + tn) / len(y_true),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": roc_auc(y_true, p_dog),
        "loss": float(-np.mean(y_true * np.log(clipped) + (1 - y_true) * np.log(1 - clipped))),
        "accuracy_cat": tn / (tn + fp) if tn + fp else 0.0,
        "accuracy_dog": tp / (tp + fn) if tp + fn else 0.0,
        "ece": expected_calibration_error(y_true, p_dog),
        "test_images": int(len(y_true)),
        "confusion": {"cat_as_cat": tn, "cat_as_dog": fp, "dog_as_cat": fn, "dog_as_dog": tp},
    }


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Probability that a random dog scores above a random cat (ties count half)."""
    positives, negatives = score[y_true == 1], score[y_true == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    ranks = pd.Series(np.concatenate([positives, negatives])).rank().to_numpy()
    return float(
        (ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives))
    )


def roc_curve(y_true: np.ndarray, score: np.ndarray, max_points: int = 200) -> pd.DataFrame:
    thresholds = np.unique(np.quantile(score, np.linspace(0, 1, max_points)))[::-1]
    positives, negatives = max(1, (y_true == 1).sum()), max(1, (y_true == 0).sum())
    rows = [
        (((score >= t) & (y_true == 0)).sum() / negatives, ((score >= t) & (y_true == 1)).sum() / positives, t)
        for t in thresholds
    ]
    return pd.DataFrame([(0.0, 0.0, 1.0), *rows, (1.0, 1.0, 0.0)], columns=["fpr", "tpr", "threshold"])


def expected_calibration_error(y_true: np.ndarray, p_dog: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = np.where(p_dog >= 0.5, p_dog, 1 - p_dog)
    correct = (p_dog >= 0.5).astype(int) == y_true
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return float(
        sum(
            abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
            for b in range(bins)
            if (which == b).any()
        )
    )


def _rounded(metrics: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


def _answers(model, reader: ShardReader, params: EvaluateParams) -> tuple[np.ndarray, pd.DataFrame]:
    """p(dog) of every image of `reader`, and the table of answers (path, actual, predicted, p_dog)."""
    from catdog.model.batches import ShardBatches
    from catdog.model.network import predict_p_dog

    batches = ShardBatches(reader, params.batch_size, shuffle=False)
    p_dog = (
        predict_p_dog(model, (batches[i][0] for i in range(len(batches))), params.flip_tta)
        if len(reader)
        else np.zeros(0)
    )
    predicted = np.where(p_dog >= params.threshold, "dog", "cat")
    return p_dog, reader.index[["path", "label"]].rename(columns={"label": "actual"}).assign(
        predicted=predicted, p_dog=p_dog.round(4)
    )


def record_metrics(folder: Path, metrics: dict) -> None:
    """The metrics as DVCLive's summary (folder/metrics.json), which `dvc metrics` and `dvc exp show` read."""
    live = open_live(folder)
    live.summary.update(metrics)
    live.make_summary()


def run(
    params: EvaluateParams,
    model_file: Path,
    preprocessed: Path,
    metrics_dir: Path,
    plots_dir: Path,
    testset: Path | None = None,
) -> dict:
    """The model on the test split, and on the curated test set in `testset` when it has images
    (metrics under "test_source", answers in confusion_curated.csv)."""
    from catdog.model.network import load_model

    test = ShardReader(preprocessed / "test")
    model = load_model(model_file)
    p_dog, predictions = _answers(model, test, params)
    metrics = binary_metrics(test.labels, p_dog, params.threshold)
    rounded = _rounded(metrics)
    curated = (
        ShardReader(testset / "test") if testset is not None and (testset / "test" / "index.csv").exists() else None
    )
    curated_answers = pd.DataFrame(columns=predictions.columns)
    if curated is not None and len(curated):
        curated_p_dog, curated_answers = _answers(model, curated, params)
        rounded["test_source"] = _rounded(binary_metrics(curated.labels, curated_p_dog, params.threshold))
    record_metrics(metrics_dir / "evaluate", rounded)
    with atomic_path(metrics_dir / "confusion_curated.csv") as tmp:
        curated_answers.to_csv(tmp, index=False)

    predicted = predictions["predicted"].to_numpy()
    with atomic_path(metrics_dir / "confusion.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    with atomic_path(metrics_dir / "roc.csv") as tmp:
        roc_curve(test.labels.astype(int), p_dog).round(4).to_csv(tmp, index=False)

    from catdog.core import plots

    plots_dir.mkdir(parents=True, exist_ok=True)
    wrong = np.flatnonzero(predicted != test.index["label"].to_numpy())[: params.misclassified_shown]
    plots.misclassified_grid(test.images(wrong), predictions.iloc[wrong], plots_dir / "misclassified.png")
    plots.confusion_matrix(metrics["confusion"], plots_dir / "confusion.png")
    plots.roc({f"AUC {metrics['roc_auc']:.3f}": pd.read_csv(metrics_dir / "roc.csv")}, plots_dir / "roc.png")
    history = read_history(metrics_dir / "train")
    if history is not None:
        plots.training_curves({"this run": history}, plots_dir / "training_curves.png")
    print(
        "evaluate: "
        + ", ".join(f"{k} {rounded[k]}" for k in ["accuracy", "accuracy_cat", "accuracy_dog", "roc_auc", "loss", "ece"])
    )
    if "test_source" in rounded:
        on_set = rounded["test_source"]
        print(
            f"evaluate: curated test set ({on_set['test_images']} images): accuracy {on_set['accuracy']}, "
            f"cat {on_set['accuracy_cat']}, dog {on_set['accuracy_dog']}, ece {on_set['ece']}"
        )
    print(f"evaluate: plots in {plots_dir}")
    return rounded


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> dict:
    return run(params.evaluate, paths.model, paths.preprocessed, paths.metrics, paths.plots, paths.testset)


if __name__ == "__main__":
    sys.exit(stage_main("evaluate", stage))
