"""Where each stage reads and writes, relative to the project folder (dvc.yaml lists the same)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def lock(self) -> Path:
        return self.root / "dvc.lock"

    @property
    def good_lock(self) -> Path:
        """dvc.lock as the last run found it, when it was sound (see catdog/core/lockfile.py)."""
        return self.cache / "dvc.lock.good"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pipeline_lock(self) -> Path:
        """Held by a pipeline run (flow train) from start to end: one run per workspace at a time."""
        return self.data / ".pipeline.lock"

    @property
    def source_manifest(self) -> Path:
        """What the source holds (path, bytes, sha256 per file): the stage DVC watches for new photos."""
        return self.data / "source" / "manifest.csv"

    @property
    def test_source_manifest(self) -> Path:
        """The same for evaluate.test_source (empty without one)."""
        return self.data / "source" / "test-manifest.csv"

    @property
    def testset(self) -> Path:
        """The curated test set, ingested, validated and converted (catdog/stages/testset.py)."""
        return self.data / "testset"

    @property
    def cache(self) -> Path:
        """Working state kept between runs, outside DVC and git (the source's stat cache)."""
        return self.data / "cache"

    @property
    def ingested(self) -> Path:
        return self.data / "ingested"

    @property
    def validated(self) -> Path:
        return self.data / "validated"

    @property
    def preprocessed(self) -> Path:
        return self.data / "preprocessed"

    @property
    def model_dir(self) -> Path:
        return self.data / "model"

    @property
    def model(self) -> Path:
        return self.model_dir / "model.keras"

    @property
    def checkpoints(self) -> Path:
        return self.data / "checkpoints"

    @property
    def registry(self) -> Path:
        return self.data / "registry"

    @property
    def metrics(self) -> Path:
        """Small metric and plot-data files tracked by git (cache: false) so diffs work anywhere."""
        return self.data / "metrics"

    @property
    def evaluation(self) -> Path:
        """evaluate's metrics on the test split (and the curated test set), as DVCLive writes them."""
        return self.metrics / "evaluate" / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.data / "plots"

    @property
    def serving(self) -> Path:
        """What `catdog serve` saw and said (prediction log, kept inputs, labels): not a stage's output."""
        return self.data / "serving"


def project(root: Path | str = ".") -> ProjectPaths:
    return ProjectPaths(Path(root).resolve())
