"""Stage 1 of 8, source: what the ingest source holds right now, as a manifest DVC can watch.

Reads  ingest.source and evaluate.test_source (folders or archives; the embedded set), monitor.labelled.
Writes data/source/manifest.csv and test-manifest.csv (persist: compared with the previous ones),
       data/cache/source-stat.tsv, source-changes.json and a sound copy of dvc.lock.

DVC tracks the path written in params.yaml, not the files behind it. This stage runs on every
`dvc repro` (`always_changed`) and writes data/source/manifest.csv: one row per file (relative
path, bytes, sha256) in a fixed order. `ingest` depends on that file, so DVC reruns ingest and
what follows exactly when a file was added, removed or changed, and skips them otherwise.

Hashing is the only real cost on a big folder, so a file whose (inode, mtime, size) is what it
was at the last listing keeps its hash from a stat cache (data/cache/source-stat.tsv), as git's
index does. The manifest is also ingest's snapshot: ingest takes exactly the files it lists.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import pandas as pd

from catdog.core import lockfile
from catdog.core.config import EMBEDDED_SOURCE, IngestParams, Params
from catdog.core.entry import stage_main
from catdog.core.errors import CatdogError
from catdog.core.files import atomic_path, write_json
from catdog.core.paths import ProjectPaths
from catdog.data.sources import (
    LABELLED_PREFIX,
    STAT_CACHE,
    StatCache,
    animal_mnist_dir,
    label_from_path,
    read_manifest,
    source_name,
    walk_entries,
)

MANIFEST_COLUMNS = ["path", "bytes", "sha256"]
TEST_STAT_CACHE = "test-source-stat.tsv"
NOT_HASHED = ""  # sha256 of an entry ingest will refuse anyway (not a regular file, too large)


class SourceError(CatdogError):
    """The source cannot be listed; the message says why and what to do."""


@dataclass(frozen=True)
class Changes:
    added: list[str]
    removed: list[str]
    changed: list[str]

    @property
    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)

    def summary(self) -> str:
        if not self.count:
            return "no file added, removed or changed"
        return f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"

    def to_dict(self, examples: int = 10) -> dict:
        added_labels = pd.Series([label_from_path(name) or "no label" for name in self.added], dtype=object)
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "added_by_label": {str(k): int(v) for k, v in added_labels.value_counts().sort_index().items()},
            "examples": {
                "added": self.added[:examples],
                "removed": self.removed[:examples],
                "changed": self.changed[:examples],
            },
        }


# ---------------------------------------------------------------- listing


def _row(
    name: str, path: str | Path, cache: StatCache, max_bytes: int, stat: os.stat_result | None = None
) -> tuple[str, int, str]:
    stat = stat or os.stat(path)
    if not S_ISREG(stat.st_mode) or stat.st_size > max_bytes:
        return name, stat.st_size, NOT_HASHED
    return name, stat.st_size, cache.sha256(name, path, stat)


def list_source(
    source: Path | None, params: IngestParams, cache: StatCache, labelled: Path | None = None
) -> pd.DataFrame:
    """The manifest rows of a folder (every file), an archive (the archive itself) or the embedded set;
    with `labelled` (monitor.labelled beside an archive or the embedded set), that folder's files too,
    named `labelled/...`."""
    rows = _source_rows(source, params, cache)
    if labelled is not None and labelled.is_dir():
        rows += _folder_rows(labelled, params, cache, LABELLED_PREFIX)
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def _folder_rows(folder: Path, params: IngestParams, cache: StatCache, prefix: str = "") -> list[tuple]:
    rows = []
    for name, entry in walk_entries(folder, prefix):
        try:
            stat = entry.stat()  # one system call per file: the entry knows its type already
        except FileNotFoundError:  # removed while we listed (or a dangling link): not in this snapshot
            continue
        rows.append(_row(name, entry.path, cache, params.max_file_bytes, stat))
    return rows


def _source_rows(source: Path | None, params: IngestParams, cache: StatCache) -> list[tuple]:
    if source is None:
        folder = animal_mnist_dir()
        rows = [_row(f"{EMBEDDED_SOURCE}/{path.name}", path, cache, 2**63) for path in sorted(folder.glob("*.gz"))]
    elif source.is_dir():
        rows = _folder_rows(source, params, cache)
    elif source.is_file():
        rows = [_row(source.name, source, cache, 2**63)]
    elif not source.exists():
        raise SourceError(
            f"ingest.source: {source} does not exist (any more); the previous outputs and the "
            "registry are untouched (fix: restore it, or point ingest.source at the new place)"
        )
    else:
        raise SourceError(f"ingest.source: {source} is neither a folder nor a file")
    return rows


def changes_between(old: pd.DataFrame | None, new: pd.DataFrame) -> Changes:
    old_hashes = {} if old is None else dict(zip(old["path"], old["sha256"]))
    new_hashes = dict(zip(new["path"], new["sha256"]))
    return Changes(
        added=[p for p in new_hashes if p not in old_hashes],
        removed=[p for p in old_hashes if p not in new_hashes],
        changed=[p for p, h in new_hashes.items() if p in old_hashes and old_hashes[p] != h],
    )


# ---------------------------------------------------------------- the stage


@dataclass(frozen=True)
class SourceResult:
    files: int
    changes: Changes
    hashed: int
    held_back: bool  # changes below ingest.min_changed_files: the previous manifest stays


def run(
    params: IngestParams, source: Path | None, manifest_file: Path, cache_dir: Path, labelled: Path | None = None
) -> SourceResult:
    """List the source (and `labelled` beside it) into `manifest_file`; a change smaller than
    `min_changed_files` is held back (the previous manifest stays, so nothing downstream reruns)
    until enough have gathered."""
    if source is not None and source.is_dir() and not os.access(source, os.R_OK | os.X_OK):
        raise SourceError(
            f"ingest.source: {source} is not readable by this user; the previous outputs and the "
            "registry are untouched (fix: its permissions)"
        )
    cache = StatCache(cache_dir / STAT_CACHE)
    try:
        listing = list_source(source, params, cache, labelled)
    except PermissionError as error:
        raise SourceError(
            f"ingest.source: cannot read {error.filename}: permission denied; the previous outputs "
            "and the registry are untouched (fix: its permissions, or remove it)"
        ) from None
    if source is not None and source.is_file() and not (zipfile.is_zipfile(source) or _is_tar(source)):
        raise SourceError(
            f"ingest.source: {source} is neither a folder nor a .zip/.tar/.tar.gz archive "
            f"(fix: point it at one, or use '{EMBEDDED_SOURCE}')"
        )
    previous = read_manifest(manifest_file)
    changes = changes_between(previous, listing)
    held_back = previous is not None and 0 < changes.count < params.min_changed_files
    if not held_back and (previous is None or changes.count):
        with atomic_path(manifest_file) as tmp:
            listing.to_csv(tmp, index=False)
    cache.save()
    write_json(
        cache_dir / "source-changes.json",
        {"source": source_name(source), "files": len(listing), "held_back": held_back, **changes.to_dict()},
    )
    if held_back:
        print(
            f"source: {changes.summary()} in {source_name(source)}: fewer than ingest.min_changed_files "
            f"({params.min_changed_files}), so the pipeline keeps the previous snapshot for now"
        )
    else:
        print(
            f"source: {len(listing):,} files in {source_name(source)}; {changes.summary()} since the last run"
            + (f" ({cache.hashed:,} hashed)" if cache.hashed else "")
        )
    return SourceResult(len(listing), changes, cache.hashed, held_back)


def list_test_source(params: IngestParams, test_source: Path | None, manifest_file: Path, cache_dir: Path) -> None:
    """The manifest of evaluate.test_source (empty without one), so DVC sees the curated set change."""
    cache = StatCache(cache_dir / TEST_STAT_CACHE)
    listing = (
        list_source(test_source, params, cache) if test_source is not None else pd.DataFrame(columns=MANIFEST_COLUMNS)
    )
    with atomic_path(manifest_file) as tmp:
        listing.to_csv(tmp, index=False)
    cache.save()


def _is_tar(path: Path) -> bool:
    import tarfile

    return tarfile.is_tarfile(path)


def stage(params: Params, paths: ProjectPaths, progress: bool = True) -> SourceResult:
    lockfile.keep_good_copy(paths)
    result = run(
        params.ingest,
        params.source_path(paths.root),
        paths.source_manifest,
        paths.cache,
        params.labelled_beside(paths.root),
    )
    list_test_source(params.ingest, params.test_source_path(paths.root), paths.test_source_manifest, paths.cache)
    return result


if __name__ == "__main__":
    sys.exit(stage_main("source", stage))
