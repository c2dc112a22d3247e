"""Reading a source: the embedded set, a folder or a .zip/.tar(.gz) archive, file by file.

Shared by the `source` stage (which lists and hashes what a source holds) and `ingest` (which
takes its files): folder walking with a stat cache, labels from names, archives read member by
member with their limits, and the embedded `animal-mnist` silhouettes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import re
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from catdog.core.config import EMBEDDED_SOURCE, IngestParams
from catdog.core.errors import CatdogError
from catdog.core.files import atomic_path, sha256_file

STAT_CACHE = "source-stat.tsv"


LABELLED_PREFIX = (
    "labelled/"  # manifest names of monitor.labelled's files, listed beside an archive or the embedded set
)


def walk_entries(folder: Path, prefix: str = "") -> Iterator[tuple[str, os.DirEntry]]:
    """(relative POSIX name, directory entry) of every file below `folder`, in os.walk's top-down
    order with sorted names: a folder's files, then its sub-folders (links to folders not followed)."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    folders = []
    for entry in entries:
        if entry.is_dir():
            if not entry.is_symlink():
                folders.append(entry)
        else:
            yield prefix + entry.name, entry
    for entry in folders:
        yield from walk_entries(Path(entry.path), f"{prefix}{entry.name}/")


def walk_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX name, path) of every file below `folder` (see walk_entries)."""
    return ((name, Path(entry.path)) for name, entry in walk_entries(folder))


def stat_key(stat: os.stat_result) -> tuple[int, int, int]:
    """(inode, mtime, size): what says a file is untouched since it was hashed."""
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class StatCache:
    """sha256 by (path, inode, mtime, size): a file untouched since it was hashed is not read again."""

    def __init__(self, path: Path):
        self.path, self.entries, self.hashed = path, {}, 0
        if path.exists():
            for line in path.read_text().splitlines():
                name, inode, mtime, size, digest = line.rsplit("\t", 4)
                self.entries[name] = ((int(inode), int(mtime), int(size)), digest)
        self.seen: dict[str, tuple[tuple[int, int, int], str]] = {}

    def sha256(self, name: str, path: str | Path, stat: os.stat_result) -> str:
        key = stat_key(stat)
        cached = self.entries.get(name)
        digest = cached[1] if cached and cached[0] == key else None
        if digest is None:
            digest, self.hashed = sha256_file(path), self.hashed + 1
        self.seen[name] = (key, digest)
        return digest

    def save(self) -> None:
        """Keep only what this listing saw: removed files leave the cache."""
        with atomic_path(self.path) as tmp:
            tmp.write_text(
                "".join(f"{name}\t{k[0]}\t{k[1]}\t{k[2]}\t{digest}\n" for name, (k, digest) in self.seen.items())
            )


def hashed_files(cache_dir: Path) -> dict[str, tuple[tuple[int, int, int], str]]:
    """What the last listing hashed: name -> ((inode, mtime, size), sha256)."""
    return StatCache(cache_dir / STAT_CACHE).entries


def read_manifest(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"path": str, "sha256": str}, keep_default_na=False)


def source_name(source: Path | None) -> str:
    return EMBEDDED_SOURCE if source is None else str(source)


ANIMAL_MNIST_LABELS = {2: "cat", 4: "dog"}  # checked by looking at the images


_CLASS_NAMES = {"cat": "cat", "cats": "cat", "dog": "dog", "dogs": "dog"}


_LABEL_IN_NAME = re.compile(r"^(cats?|dogs?)(?=[._\-\s0-9])", re.IGNORECASE)


_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"}


_JUNK_DIRS = {"__macosx"}


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
    try:
        return stat_key(os.stat(path)) == key
    except FileNotFoundError:
        return False


def folder_entries(
    folder: Path, params: IngestParams, snapshot: pd.DataFrame | None = None, hashed: dict | None = None
) -> Iterator[Entry]:
    """The folder's files; with a snapshot (the source stage's manifest), exactly the files it lists,
    each as it was listed: a file that changed or vanished since is left for the next run. `hashed`
    (the source stage's stat cache) spares reading a file again whose stat says it is as listed."""
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
            yield Entry(
                name,
                refused="removed after the source was listed (the next run will not list it)"
                if name in listed and not path.exists()
                else "not a regular file",
            )
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
                yield Entry(
                    name, refused=f"compression ratio {ratio:.0f}:1 is over ingest.max_compression_ratio (zip bomb?)"
                )
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


def source_entries(
    params: IngestParams, source: Path | None, snapshot: pd.DataFrame | None = None, hashed: dict | None = None
) -> Iterator[Entry]:
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


def labelled_entries(
    labelled: Path, params: IngestParams, snapshot: pd.DataFrame | None = None, hashed: dict | None = None
) -> Iterator[Entry]:
    """The files of monitor.labelled (beside an archive or the embedded set), named `labelled/...` as
    the source stage listed them."""
    if snapshot is not None:
        snapshot = snapshot[snapshot["path"].str.startswith(LABELLED_PREFIX)]
        snapshot = snapshot.assign(path=snapshot["path"].str.slice(len(LABELLED_PREFIX)))
    hashed = {
        name[len(LABELLED_PREFIX) :]: known
        for name, known in (hashed or {}).items()
        if name.startswith(LABELLED_PREFIX)
    }
    if snapshot is None and not labelled.is_dir():
        return
    for entry in folder_entries(labelled, params, snapshot, hashed):
        yield dataclasses.replace(entry, name=LABELLED_PREFIX + entry.name)


def read_all(entries: Iterator[Entry], source_name: str) -> Iterator[Entry]:
    try:
        yield from entries
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise IngestError(f"{source_name}: cannot read the source: {error}") from None
