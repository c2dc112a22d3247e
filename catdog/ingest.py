"""Stage 1, ingest: copy raw labelled images from the source into data/ingested/.

Sources: the embedded `animal-mnist` silhouettes, a folder, or a .zip/.tar(.gz) archive, in
either layout: class sub-folders (`cat/`, `Dogs/`, `PetImages/Cat/`) or Kaggle's flat folder
with the label in the file name (`cat.123.jpg`). Archives are read member by member and never
extracted wholesale: unsafe paths, links, special files and bombs are refused by name.

Output: data/ingested/images/... (the files, byte for byte), manifest.csv (path, label,
sha256, bytes, source) and skipped.csv (source, reason) for what was not taken.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
import itertools
import os
import pickle
import re
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from catdog.config import EMBEDDED_SOURCE, IngestParams
from catdog.errors import CatdogError
from catdog.files import atomic_dir
from catdog.reuse import FileStore

ANIMAL_MNIST_LABELS = {2: "cat", 4: "dog"}  # checked by looking at the images
_CLASS_NAMES = {"cat": "cat", "cats": "cat", "dog": "dog", "dogs": "dog"}
_LABEL_IN_NAME = re.compile(r"^(cats?|dogs?)(?=[._\-\s0-9])", re.IGNORECASE)
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"}
_JUNK_DIRS = {"__macosx"}
MANIFEST_COLUMNS = ["path", "label", "sha256", "bytes", "source"]


class IngestError(CatdogError):
    """The source as a whole cannot be ingested; the message says why and what to do."""


@dataclass(frozen=True)
class Entry:
    """One file of the source: where it came from and its bytes (None when refused, or when its
    (sha256, size) is `known`: a folder file whose stat says it holds what the source stage listed)."""

    name: str
    data: bytes | None = None
    refused: str | None = None
    known: tuple[str, int] | None = None

    @cached_property
    def sha256(self) -> str:
        return self.known[0] if self.known else hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return self.known[1] if self.known else len(self.data)


@dataclass(frozen=True)
class IngestResult:
    manifest: pd.DataFrame
    skipped: pd.DataFrame


# ---------------------------------------------------------------- labels and junk


def label_from_path(name: str) -> str | None:
    """'cat' or 'dog' from the file name (`cat.1.jpg`) or else the nearest class folder."""
    parts = name.split("/")  # a relative POSIX name (see safe_member_name)
    match = _LABEL_IN_NAME.match(parts[-1]) if parts else None
    if match:
        return _CLASS_NAMES[match.group(1).lower()]
    for folder in reversed(parts[:-1]):
        if folder.lower() in _CLASS_NAMES:
            return _CLASS_NAMES[folder.lower()]
    return None


def junk_reason(name: str) -> str | None:
    parts = name.split("/")
    if any(part.lower() in _JUNK_DIRS for part in parts) or parts[-1].lower() in _JUNK_NAMES:
        return "OS junk file"
    if any(part.startswith(".") for part in parts):
        return "hidden file"
    return None


def safe_member_name(name: str) -> str | None:
    """The member's relative POSIX path, or None when it is absolute or climbs out (`..`)."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


# ---------------------------------------------------------------- sources


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy array reconstruction only: a tampered data file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def load_numpy_pickle(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        array = _NumpyOnlyUnpickler(f).load()
    if not isinstance(array, np.ndarray):
        raise IngestError(f"{path}: expected a numpy array, found {type(array).__name__}")
    return array


def animal_mnist_dir() -> Path:
    # find_spec locates the installed package without importing it (its loader imports TF).
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise IngestError("the embedded data set needs the 'animal-mnist' package: run `make setup`")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


def embedded_entries() -> Iterator[Entry]:
    folder = animal_mnist_dir()
    images = load_numpy_pickle(folder / "animal_data_version_3.gz")
    labels = load_numpy_pickle(folder / "animal_label_version_3.gz")
    for index in np.flatnonzero(np.isin(labels, list(ANIMAL_MNIST_LABELS))):
        buffer = io.BytesIO()
        Image.fromarray(images[index].astype(np.uint8), "L").save(buffer, "PNG")
        label = ANIMAL_MNIST_LABELS[int(labels[index])]
        yield Entry(f"{label}/animal-mnist-{index:05d}.png", buffer.getvalue())


def _untouched(path: str | Path, key: tuple[int, int, int]) -> bool:
    from catdog.source import stat_key

    try:
        return stat_key(os.stat(path)) == key
    except FileNotFoundError:
        return False


def folder_entries(folder: Path, params: IngestParams, snapshot: pd.DataFrame | None = None,
                   hashed: dict | None = None) -> Iterator[Entry]:
    """The folder's files; with a snapshot (the source stage's manifest), exactly the files it lists,
    each as it was listed: a file that changed or vanished since is left for the next run. `hashed`
    (the source stage's stat cache) spares reading a file again whose stat says it is as listed."""
    from catdog.source import walk_files

    if snapshot is None:
        names, listed = walk_files(folder), {}
    else:
        base, listed = os.fspath(folder), dict(zip(snapshot["path"].tolist(), snapshot["sha256"].tolist()))
        names = ((name, f"{base}/{name}") for name in listed)
    hashed = hashed or {}
    for name, path in names:
        known = hashed.get(name)
        if known and name in listed and known[1] == listed[name] and _untouched(path, known[0]):
            yield Entry(name, known=(known[1], known[0][2]))
            continue
        path = Path(path)
        if not path.is_file():
            yield Entry(name, refused="removed after the source was listed (the next run will not list it)"
                        if name in listed and not path.exists() else "not a regular file")
        elif path.stat().st_size > params.max_file_bytes:
            yield Entry(name, refused=f"larger than ingest.max_file_bytes ({params.max_file_bytes:,})")
        else:
            entry = Entry(name, path.read_bytes())
            if name in listed and listed[name] != entry.sha256:
                yield Entry(name, refused="changed after the source was listed (the next run takes it)")
            else:
                yield entry


class _ArchiveBudget:
    """Counts uncompressed bytes across an archive; a bomb stops the whole ingest."""

    def __init__(self, archive: Path, params: IngestParams):
        self.archive, self.params, self.total = archive, params, 0

    def read(self, stream, name: str) -> bytes | str:
        """The member's bytes, or the reason it is refused; reads at most the limit + 1 byte."""
        data = stream.read(self.params.max_file_bytes + 1)
        if len(data) > self.params.max_file_bytes:
            return f"larger than ingest.max_file_bytes ({self.params.max_file_bytes:,})"
        self.total += len(data)
        if self.total > self.params.max_archive_bytes:
            raise IngestError(
                f"{self.archive.name}: uncompressed content exceeds ingest.max_archive_bytes "
                f"({self.params.max_archive_bytes:,} bytes) at {name!r}; refusing a possible archive "
                "bomb (fix: raise ingest.max_archive_bytes if the archive is really that large)"
            )
        return data


def zip_entries(archive: Path, params: IngestParams) -> Iterator[Entry]:
    budget = _ArchiveBudget(archive, params)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = safe_member_name(info.filename)
            mode = info.external_attr >> 16
            if name is None:
                yield Entry(info.filename, refused="unsafe path (absolute or '..')")
            elif stat.S_ISLNK(mode):
                yield Entry(name, refused="symbolic link")
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no file type recorded
                yield Entry(name, refused="device or special file")
            elif info.compress_size and info.file_size / info.compress_size > params.max_compression_ratio:
                ratio = info.file_size / info.compress_size
                yield Entry(name, refused=f"compression ratio {ratio:.0f}:1 is over "
                                          f"ingest.max_compression_ratio (zip bomb?)")
            else:
                with zf.open(info) as stream:
                    data = budget.read(stream, name)
                yield Entry(name, data) if isinstance(data, bytes) else Entry(name, refused=data)


def tar_entries(archive: Path, params: IngestParams) -> Iterator[Entry]:
    budget = _ArchiveBudget(archive, params)
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            if member.isdir():
                continue
            name = safe_member_name(member.name)
            if name is None:
                yield Entry(member.name, refused="unsafe path (absolute or '..')")
            elif member.issym() or member.islnk():
                yield Entry(name, refused=f"link to {member.linkname!r}")
            elif not member.isfile():
                yield Entry(name, refused="device or special file")
            else:
                data = budget.read(tf.extractfile(member), name)
                yield Entry(name, data) if isinstance(data, bytes) else Entry(name, refused=data)


def source_entries(params: IngestParams, source: Path | None, snapshot: pd.DataFrame | None = None,
                   hashed: dict | None = None) -> Iterator[Entry]:
    if source is None:
        return embedded_entries()
    if source.is_dir():
        return folder_entries(source, params, snapshot, hashed)
    if zipfile.is_zipfile(source):
        return zip_entries(source, params)
    if tarfile.is_tarfile(source):
        return tar_entries(source, params)
    raise IngestError(
        f"ingest.source: {source} is neither a folder nor a readable .zip/.tar/.tar.gz archive "
        f"(fix: point it at one, or use '{EMBEDDED_SOURCE}')"
    )


def labelled_entries(labelled: Path, params: IngestParams, snapshot: pd.DataFrame | None = None,
                     hashed: dict | None = None) -> Iterator[Entry]:
    """The files of monitor.labelled (beside an archive or the embedded set), named `labelled/...` as
    the source stage listed them."""
    from catdog.source import LABELLED_PREFIX

    if snapshot is not None:
        snapshot = snapshot[snapshot["path"].str.startswith(LABELLED_PREFIX)]
        snapshot = snapshot.assign(path=snapshot["path"].str.slice(len(LABELLED_PREFIX)))
    hashed = {name[len(LABELLED_PREFIX):]: known for name, known in (hashed or {}).items()
              if name.startswith(LABELLED_PREFIX)}
    if snapshot is None and not labelled.is_dir():
        return
    for entry in folder_entries(labelled, params, snapshot, hashed):
        yield dataclasses.replace(entry, name=LABELLED_PREFIX + entry.name)


def _read_all(entries: Iterator[Entry], source_name: str) -> Iterator[Entry]:
    try:
        yield from entries
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise IngestError(f"{source_name}: cannot read the source: {error}") from None


# ---------------------------------------------------------------- the stage


def run(params: IngestParams, out_dir: Path, source: Path | None, progress: bool = True,
        snapshot: pd.DataFrame | None = None, hashed: dict | None = None, store: FileStore | None = None,
        labelled: Path | None = None) -> IngestResult:
    """Ingest `source` (None = embedded data set) into `out_dir`, replacing it atomically; a folder
    source as the source stage listed it in `snapshot`, when given. With a `store`, every file is
    a hard link to its copy there, and a folder file that `hashed` (the source stage's stat cache)
    says is unchanged since it was stored is not read at all. `labelled` (monitor.labelled beside an
    archive or the embedded set) adds the photos labelled in `catdog serve`; the cap never drops them."""
    from tqdm import tqdm

    source_name = EMBEDDED_SOURCE if source is None else str(source)
    rows, skipped, seen, folders = [], [], set(), set()
    held = store.held() if store else set()
    hashed = {name: known for name, known in (hashed or {}).items() if known[1] in held}
    with atomic_dir(out_dir) as tmp:
        root = os.fspath(tmp)  # strings, not Paths: per file, pathlib cost more than the link itself
        entries = _read_all(source_entries(params, source, snapshot, hashed), source_name)
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
            rows.append({"path": relative, "label": label, "sha256": entry.sha256,
                         "bytes": entry.size, "source": entry.name})
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
                f"{source_name}: no labelled images found ({len(skipped)} files skipped, see reasons "
                "below). Use class folders (cat/, dog/) or names like cat.1.jpg.\n"
                + skipped_frame.head(10).to_string(index=False)
            )
    counts = manifest["label"].value_counts().to_dict()
    print(f"ingest: {len(manifest)} images from {source_name} "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}); {len(skipped)} skipped")
    return IngestResult(manifest, skipped_frame)


def cap_per_class(manifest: pd.DataFrame, max_per_class: int | None, keep: pd.Series | None = None
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
