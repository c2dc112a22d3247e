"""Stage 2 of 8, ingest: the source's labelled images, byte for byte, into data/ingested/.

Reads  ingest.source as data/source/manifest.csv listed it (and monitor.labelled beside an archive
       or the embedded set), the source stage's stat cache (data/cache/source-stat.tsv).
Writes data/ingested/ (images/, manifest.csv, skipped.csv); keeps each file's copy in
       data/cache/ingested-files/ so an unchanged file is a hard link, not a new copy.
"""

from __future__ import annotations

import sys

from catdog.core.config import Params
from catdog.core.entry import stage_main
from catdog.core.paths import ProjectPaths
from catdog.data import intake
from catdog.data.reuse import FileStore
from catdog.data.sources import hashed_files, read_manifest


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> intake.IngestResult:
    return intake.ingest(
        params.ingest,
        paths.ingested,
        params.source_path(paths.root),
        progress=progress,
        snapshot=read_manifest(paths.source_manifest),
        hashed=hashed_files(paths.cache),
        store=FileStore(paths.cache / "ingested-files"),
        labelled=params.labelled_beside(paths.root),
    )


if __name__ == "__main__":
    sys.exit(stage_main("ingest", stage))
