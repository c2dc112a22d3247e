"""Intake: copy a source's labelled images into a folder (the ingest stage does it for the training
data, into data/ingested/, and testset for the curated set).

Sources: the embedded `animal-mnist` silhouettes, a folder, or a .zip/.tar(.gz) archive, in
either layout: class sub-folders (`cat/`, `Dogs/`, `PetImages/Cat/`) or Kaggle's flat folder
with the label in the file name (`cat.123.jpg`). Archives are read member by member and never
extracted wholesale: unsafe paths, links, special files and bombs are refused by name.

Output: data/ingested/images/... (the files, byte for byte), manifest.csv (path, label,
sha256, bytes, source) and skipped.csv (source, reason) for what was not taken.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from catdog.core.config import IngestParams
from catdog.core.files import atomic_dir
from catdog.data.reuse import FileStore
from catdog.data.sources import (
    IngestError,
    junk_reason,
    label_from_path,
    labelled_entries,
    read_all,
    source_entries,
    source_name,
)

MANIFEST_COLUMNS = ["path", "label", "sha256", "bytes", "source"]


@dataclass(frozen=True)
class IngestResult:
    manifest: pd.DataFrame
    skipped: pd.DataFrame


def ingest(
    params: IngestParams,
    out_dir: Path,
    source: Path | None,
    progress: bool = True,
    snapshot: pd.DataFrame | None = None,
    hashed: dict | None = None,
    store: FileStore | None = None,
    labelled: Path | None = None,
) -> IngestResult:
    """Ingest `source` (None = embedded data set) into `out_dir`, replacing it atomically; a folder
    source as the source stage listed it in `snapshot`, when given. With a `store`, every file is
    a hard link to its copy there, and a folder file that `hashed` (the source stage's stat cache)
    says is unchanged since it was stored is not read at all. `labelled` (monitor.labelled beside an
    archive or the embedded set) adds the photos labelled in `catdog serve`; the cap never drops them."""
    from tqdm import tqdm

    origin = source_name(source)
    rows, skipped, seen, folders = [], [], set(), set()
    held = store.held() if store else set()
    hashed = {name: known for name, known in (hashed or {}).items() if known[1] in held}
    with atomic_dir(out_dir) as tmp:
        root = os.fspath(tmp)  # strings, not Paths: per file, pathlib cost more than the link itself
        entries = read_all(source_entries(params, source, snapshot, hashed), origin)
        if labelled is not None:
            entries = itertools.chain(entries, labelled_entries(labelled, params, snapshot, hashed))
        for entry in tqdm(entries, desc="ingest", unit="file", disable=not progress):
            reason = entry.refused or junk_reason(entry.name)
            label = label_from_path(entry.name)
            if reason is None and label is None:
                reason = "no label: neither the file name nor a folder says cat or dog"
            if reason is None and entry.name in seen:
                reason = "duplicate entry name in the source"
            if reason is not None:
                skipped.append({"source": entry.name, "reason": reason})
                continue
            seen.add(entry.name)
            relative = f"images/{entry.name}"
            if store:
                if entry.data is not None:
                    store.put(entry.sha256, entry.data)
            else:
                target = f"{root}/{relative}"
                folder = os.path.dirname(target)
                if folder not in folders:
                    os.makedirs(folder, exist_ok=True)
                    folders.add(folder)
                with open(target, "wb") as f:
                    f.write(entry.data)
            rows.append(
                {"path": relative, "label": label, "sha256": entry.sha256, "bytes": entry.size, "source": entry.name}
            )
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        by_hand = manifest["source"].str.startswith("labelled/") if labelled is not None else None
        manifest, capped = cap_per_class(manifest, params.max_per_class, keep=by_hand)
        if store:  # linked once capped: a file the cap leaves out is never linked
            store.link_all(zip(manifest["sha256"].tolist(), (f"{root}/{path}" for path in manifest["path"].tolist())))
            store.prune(set(manifest["sha256"]))
        else:
            for path in capped:
                (tmp / path).unlink()
        skipped_frame = pd.DataFrame(skipped, columns=["source", "reason"])
        manifest.to_csv(tmp / "manifest.csv", index=False)
        skipped_frame.to_csv(tmp / "skipped.csv", index=False)
        if manifest.empty:
            raise IngestError(
                f"{origin}: no labelled images found ({len(skipped)} files skipped, see reasons "
                "below). Use class folders (cat/, dog/) or names like cat.1.jpg.\n"
                + skipped_frame.head(10).to_string(index=False)
            )
    counts = manifest["label"].value_counts().to_dict()
    print(
        f"ingest: {len(manifest)} images from {origin} "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}); {len(skipped)} skipped"
    )
    return IngestResult(manifest, skipped_frame)


def cap_per_class(
    manifest: pd.DataFrame, max_per_class: int | None, keep: pd.Series | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Keep at most `max_per_class` per label, chosen by content hash (stable, order-free). Rows
    marked in `keep` (photos labelled by hand) are kept beyond the cap."""
    if max_per_class is None:
        return manifest.sort_values("path", ignore_index=True), []
    if keep is not None and keep.any():
        capped, dropped = cap_per_class(manifest[~keep], max_per_class)
        return pd.concat([capped, manifest[keep]]).sort_values("path", ignore_index=True), dropped
    # Rank by a hash *of* the content hash: preprocess splits by the content hash itself, and
    # keeping the lowest content hashes would skew every capped sample towards one split.
    rank = manifest["sha256"].map(lambda h: hashlib.sha256(f"cap:{h}".encode()).hexdigest())
    ordered = manifest.assign(rank=rank).sort_values(["label", "rank", "path"])
    kept = ordered.groupby("label", sort=True).head(max_per_class).drop(columns="rank")
    dropped = ordered.loc[~ordered.index.isin(kept.index), "path"].tolist()
    return kept.sort_values("path", ignore_index=True), dropped
