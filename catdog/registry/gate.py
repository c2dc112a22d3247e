"""The blessing gate: does a new model replace production? Decided on paired evidence.

Both models are scored on the same test images, so the question is not "which number is
higher" (on 188 photos one photo is half a point, and ±3 points is noise) but "is the new
model *significantly* worse on these images". The exact McNemar test answers it from the
images only one of the two gets right. Promotion rule:

    accuracy >= register.min_accuracy, and not significantly worse than production
    (worse on the same images with McNemar's p < register.max_p_value).

The first model ever, or a production model that cannot be scored (its file is missing or
damaged), is judged on register.min_accuracy alone, and the reason says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from catdog.core.config import RegisterParams

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Verdict:
    production: bool
    reason: str


@dataclass(frozen=True)
class Paired:
    """The candidate and production scored on the same images."""

    production_version: str
    images: int
    candidate_accuracy: float
    candidate_ci95: tuple[float, float]
    production_accuracy: float
    production_ci95: tuple[float, float]
    difference: float  # candidate - production
    difference_ci95: tuple[float, float]
    only_candidate_right: int
    only_production_right: int
    p_value: float  # exact McNemar, two-sided

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def sentence(self) -> str:
        return (
            f"{self.candidate_accuracy:.4f} {_ci(self.candidate_ci95)} vs production {self.production_version} "
            f"{self.production_accuracy:.4f} {_ci(self.production_ci95)} on the same {self.images} images: "
            f"difference {self.difference:+.4f} {_ci(self.difference_ci95)}, McNemar p = {self.p_value:.3g}"
        )


def _ci(interval: tuple[float, float]) -> str:
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% confidence interval of a proportion (Wilson score: sound near 0 and 1 and for small n)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs at 1/2."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference_interval(only_a: int, only_b: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% interval of accuracy(a) - accuracy(b) from paired outcomes (Wald, on the discordant pairs)."""
    if n == 0:
        return -1.0, 1.0
    d = (only_a - only_b) / n
    variance = ((only_a + only_b) / n - d * d) / n
    half = z * math.sqrt(max(variance, 0.0))
    return max(-1.0, d - half), min(1.0, d + half)


def compare(candidate_correct: np.ndarray, production_correct: np.ndarray, production_version: str) -> Paired:
    candidate_correct, production_correct = np.asarray(candidate_correct, bool), np.asarray(production_correct, bool)
    n = len(candidate_correct)
    only_candidate = int((candidate_correct & ~production_correct).sum())
    only_production = int((production_correct & ~candidate_correct).sum())
    return Paired(
        production_version=production_version,
        images=n,
        candidate_accuracy=float(candidate_correct.mean()) if n else 0.0,
        candidate_ci95=wilson_interval(int(candidate_correct.sum()), n),
        production_accuracy=float(production_correct.mean()) if n else 0.0,
        production_ci95=wilson_interval(int(production_correct.sum()), n),
        difference=(only_candidate - only_production) / n if n else 0.0,
        difference_ci95=paired_difference_interval(only_candidate, only_production, n),
        only_candidate_right=only_candidate,
        only_production_right=only_production,
        p_value=mcnemar_exact(only_candidate, only_production),
    )


def decide(
    accuracy: float,
    params: RegisterParams,
    production: str | None,
    paired: Paired | None,
    unscorable: str | None = None,
) -> Verdict:
    """The gate's verdict for a candidate of test `accuracy`; `paired` is its comparison with
    `production` on the same images, or None with the reason in `unscorable`."""
    if accuracy < params.min_accuracy:
        return Verdict(False, f"accuracy {accuracy:.4f} is below register.min_accuracy {params.min_accuracy:.4f}")
    if production is None:
        return Verdict(
            True, f"accuracy {accuracy:.4f} >= register.min_accuracy {params.min_accuracy:.4f}; first production model"
        )
    if paired is None:
        return Verdict(
            True,
            f"accuracy {accuracy:.4f} >= register.min_accuracy {params.min_accuracy:.4f}; "
            f"production {production} cannot be scored ({unscorable}), so there is nothing "
            "to compare with",
        )
    worse = paired.difference < 0 and paired.p_value < params.max_p_value
    if worse:
        return Verdict(
            False,
            f"significantly worse than production: {paired.sentence()} < register.max_p_value {params.max_p_value}",
        )
    return Verdict(True, f"not significantly worse than production: {paired.sentence()}")
