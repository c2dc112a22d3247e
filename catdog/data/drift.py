"""Drift: how this run's new images differ from the images the production model was trained on.

The new images are the accepted ones that production's training data did not have (by content
hash). Great Expectations checks each image property (width, height, aspect ratio, brightness,
contrast) with a KL divergence against production's histogram of it (production's deciles as
the bins), and the class balance and the rejection rate against production's. Each finding is a
sentence; validate warns, or fails with `validate.fail_on_drift`. Production's side is the
profile the registry keeps with every version (data-profile.csv: the accepted images' facts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PROFILE_COLUMNS = ["sha256", "label", "width", "height", "brightness", "contrast"]
PROPERTIES = {
    "width": "image width",
    "height": "image height",
    "aspect": "aspect ratio",
    "brightness": "brightness",
    "contrast": "contrast",
}
BINS = 10  # production's deciles
MIN_NEW_IMAGES = 20  # fewer make a histogram too noisy to call drift
MAX_SHARE_CHANGE = 0.10  # dog share or rejection rate moving more than this (beyond chance) is drift


@dataclass(frozen=True)
class ProductionData:
    """What the production model was trained on, as the registry keeps it (Registry.production_data)."""

    version: str
    profile: pd.DataFrame  # PROFILE_COLUMNS of its accepted images
    rejected_share: float | None


@dataclass(frozen=True)
class DriftReport:
    reference: str | None  # the production version compared with
    new_images: int
    findings: list[str]
    divergences: dict[str, float]

    @property
    def drifted(self) -> bool:
        return bool(self.findings)

    def summary(self) -> str:
        if self.reference is None:
            return "no production model yet: nothing to compare the data with"
        if self.new_images < MIN_NEW_IMAGES:
            return (
                f"{self.new_images} images new since production {self.reference}'s training data: "
                f"too few to judge drift ({MIN_NEW_IMAGES} needed)"
            )
        if not self.findings:
            return f"no drift: the {self.new_images} new images look like production {self.reference}'s training data"
        return f"drift in the {self.new_images} new images vs production {self.reference}'s: " + "; ".join(
            self.findings
        )

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "new_images": self.new_images,
            "drifted": self.drifted,
            "findings": self.findings,
            "kl_divergence": self.divergences,
            "summary": self.summary(),
        }


def _with_aspect(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(aspect=frame["width"] / frame["height"])


def partition(values: pd.Series, bins: int = BINS) -> dict:
    """GX's partition object for a continuous column: production's deciles as bin edges."""
    values = values.dropna().to_numpy(float)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([values[0] - 0.5, values[0] + 0.5])
    weights, _ = np.histogram(values, edges)
    return {"bins": edges.tolist(), "weights": (weights / weights.sum()).tolist()}


def noise_allowance(new_images: int) -> float:
    """How much KL divergence a histogram of `new_images` samples shows from its own distribution by
    chance: the plug-in estimator's bias (bins - 1) / 2n plus three of its standard deviations,
    sqrt((bins - 1) / 2) / n. Added to validate.drift_max_kl, so 20 new photos do not cry wolf."""
    return (BINS - 1) / (2 * new_images) + 3 * ((BINS - 1) / 2) ** 0.5 / new_images


def share_allowance(share: float, new_images: int) -> float:
    """MAX_SHARE_CHANGE plus three standard errors of a share measured on `new_images` images."""
    return MAX_SHARE_CHANGE + 3 * (share * (1 - share) / new_images) ** 0.5


def expectations(reference: pd.DataFrame, threshold: float, new_images: int) -> list:
    import great_expectations as gx

    E, reference = gx.expectations, _with_aspect(reference)
    dogs = float((reference["label"] == "dog").mean())
    tolerance = share_allowance(dogs, new_images)
    # tail_weight_holdout: values outside production's range count as a little mass, not infinite divergence
    return [
        E.ExpectColumnKLDivergenceToBeLessThan(
            column=column, partition_object=partition(reference[column]), threshold=threshold, tail_weight_holdout=0.01
        )
        for column in PROPERTIES
    ] + [E.ExpectColumnMeanToBeBetween(column="is_dog", min_value=dogs - tolerance, max_value=dogs + tolerance)]


def compare_with_production(
    accepted: pd.DataFrame,
    rejected_share: float,
    production: ProductionData | None,
    check,
    max_kl: float,
    labels_are: str = "dogs",
) -> DriftReport:
    """`check(name, frame, expectations)` runs a GX suite and returns its expectation results.
    `labels_are` names what the `label` column's dog share is (served images: the model's answers)."""
    if production is None or production.profile.empty:
        return DriftReport(None, 0, [], {})
    reference, reference_name = production.profile, production.version
    new = _with_aspect(accepted[~accepted["sha256"].isin(set(reference["sha256"]))])
    if len(new) < MIN_NEW_IMAGES:
        return DriftReport(reference_name, len(new), [], {})
    findings, divergences, threshold = [], {}, max_kl + noise_allowance(len(new))
    *properties, balance = check(
        "drift", new.assign(is_dog=new["label"] == "dog"), expectations(reference, threshold, len(new))
    )
    for column, result in zip(PROPERTIES, properties):
        divergences[column] = round(float(result.result.get("observed_value") or 0.0), 4)
        if not result.success:
            findings.append(
                f"{PROPERTIES[column]} distribution differs (KL divergence {divergences[column]:.2f} > "
                f"{threshold:.2f}: validate.drift_max_kl {max_kl} + {noise_allowance(len(new)):.2f} "
                f"for the noise of {len(new)} images)"
            )
    if not balance.success:
        findings.append(
            f"class balance moved: {(new['label'] == 'dog').mean():.0%} {labels_are} vs "
            f"{(reference['label'] == 'dog').mean():.0%} dogs in its training data"
        )
    before = production.rejected_share
    if before is not None and abs(rejected_share - before) > share_allowance(before, len(accepted)):
        findings.append(f"rejection rate moved: {rejected_share:.0%} vs {before:.0%}")
    return DriftReport(reference_name, len(new), findings, divergences)


@dataclass(frozen=True)
class PredictionShift:
    """How the served answers' p_dog is distributed against the same model's on its test images."""

    reference: str | None  # the version whose test answers are compared with
    served: int
    test_images: int
    divergence: float | None
    threshold: float | None

    @property
    def shifted(self) -> bool:
        return self.divergence is not None and self.divergence > self.threshold

    def summary(self) -> str:
        if self.reference is None:
            return "no test answers kept for this model (registered before they were): nothing to compare with"
        if self.served < MIN_NEW_IMAGES:
            return f"{self.served} answers: too few to judge the prediction distribution ({MIN_NEW_IMAGES} needed)"
        verdict = "shifted" if self.shifted else "no shift"
        return (
            f"{verdict}: p(dog) of {self.served} served images vs {self.reference}'s on its {self.test_images} "
            f"test images, KL divergence {self.divergence:.2f} ({'>' if self.shifted else '<='} "
            f"{self.threshold:.2f} with the noise allowance)"
        )

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "served": self.served,
            "test_images": self.test_images,
            "kl_divergence": self.divergence,
            "threshold": self.threshold,
            "shifted": self.shifted,
            "summary": self.summary(),
        }


def prediction_shift(
    served_p_dog: pd.Series, test_p_dog: pd.Series | None, reference: str | None, check, max_kl: float
) -> PredictionShift:
    """The same GX KL-divergence expectation as the image properties, on p_dog: the test answers'
    deciles as bins, `max_kl` plus the noise allowance of the served count as the threshold."""
    served = served_p_dog.dropna()
    if test_p_dog is None or test_p_dog.dropna().empty:
        return PredictionShift(None, len(served), 0, None, None)
    if len(served) < MIN_NEW_IMAGES:
        return PredictionShift(reference, len(served), len(test_p_dog), None, None)
    import great_expectations as gx

    threshold = max_kl + noise_allowance(len(served))
    expectation = gx.expectations.ExpectColumnKLDivergenceToBeLessThan(
        column="p_dog", partition_object=partition(test_p_dog), threshold=threshold, tail_weight_holdout=0.01
    )
    [result] = check("prediction-shift", pd.DataFrame({"p_dog": served.to_numpy(float)}), [expectation])
    divergence = round(float(result.result.get("observed_value") or 0.0), 4)
    return PredictionShift(reference, len(served), len(test_p_dog), divergence, threshold)
