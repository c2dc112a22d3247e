"""Stage 3 of 8, validate: every ingested image decoded and checked with Great Expectations.

Reads  data/ingested/ (manifest.csv, skipped.csv, the images); the registry's production model's
       data profile, to judge drift against.
Writes data/validated/ (accepted.csv, rejected.csv, drift.json, data_docs/),
       data/metrics/validate.json; keeps decoded facts in data/cache/validate-facts/.
"""

from __future__ import annotations

import sys

from catdog.core.config import Params
from catdog.core.entry import stage_main
from catdog.core.paths import ProjectPaths
from catdog.data import validation
from catdog.registry.store import Registry


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> validation.ValidationResult:
    return validation.validate(
        params.validate,
        paths.ingested,
        paths.validated,
        paths.metrics / "validate.json",
        progress=progress,
        cache_dir=paths.cache,
        production=Registry(params.registry_path(paths.root)).production_data(),
    )


if __name__ == "__main__":
    sys.exit(stage_main("validate", stage))
