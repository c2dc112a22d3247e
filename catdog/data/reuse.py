"""Per-image results kept between runs by content hash, so a run with a few new photos decodes
and converts only those.

Three results are kept: the files ingest took in (whose result is the content itself),
validate's facts about a file (decoded size, format, error) and preprocess's model input array.
The last two live in a namespace keyed by everything else they depend on: the stage's params,
catdog/data/images.py (the code that decodes), Pillow's and numpy's versions. Change any of them and
the namespace is a new one, so a stage never reuses a result that a run from scratch would
compute differently. After a run a store keeps exactly the photos of that run (removed photos
drop out) and other namespaces are deleted: the cache holds one run's worth. A killed run
leaves whole entries or none (files are written whole and renamed; a facts line cut short is
skipped and the file rewritten). The cache lives in data/cache/, outside DVC and git; deleting
it only makes the next run slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from catdog.core.files import atomic_path, naming, write_json

_IMAGE_CODE = Path(__file__).with_name("images.py")


def namespace(*parts) -> str:
    """A short key for results that depend on `parts`, the image code and the decoders' versions."""
    import PIL

    digest = hashlib.sha256(_IMAGE_CODE.read_bytes())
    for part in (PIL.__version__, np.__version__, *parts):
        digest.update(repr(part).encode() + b"\0")
    return digest.hexdigest()[:16]


def _drop_other_namespaces(folder: Path, keep: str) -> None:
    if folder.is_dir():
        for entry in folder.iterdir():
            if not entry.name.startswith(keep):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _json_lines(rows) -> str:
    return "".join(json.dumps({"sha256": sha, **row}, sort_keys=True) + "\n" for sha, row in rows)


class FactsCache:
    """validate's facts of each file by content hash: one JSON-lines file per namespace."""

    def __init__(self, folder: Path, key: str):
        self.folder, self.key = folder, key
        self.file = folder / f"{key}.jsonl"
        self.facts: dict[str, dict] = {}
        self.damaged = False
        if self.file.exists():
            for line in self.file.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # the last line of a run killed while appending
                    self.damaged = True
                    continue
                self.facts[row.pop("sha256")] = row

    def get(self, sha256: str) -> dict | None:
        return self.facts.get(sha256)

    def save(self, facts: dict[str, dict]) -> None:
        """Keep exactly `facts` (this run's files); other namespaces go. When no file dropped out,
        the new facts are appended: a run with a few new photos writes only their lines."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.file.exists() and not self.damaged and self.facts.keys() <= facts.keys():
            with open(self.file, "a") as f:
                f.write(_json_lines((sha, row) for sha, row in facts.items() if sha not in self.facts))
        else:
            with atomic_path(self.file) as tmp:
                tmp.write_text(_json_lines(sorted(facts.items())))
        self.facts, self.damaged = dict(facts), False
        _drop_other_namespaces(self.folder, self.key)


class _FilesByHash:
    """A folder of files named by content hash (in sub-folders by the first two hex digits)."""

    def __init__(self, root: Path):
        self.root = root
        self._root = os.fspath(root)

    def _path(self, sha256: str) -> str:
        # A string, not a Path: thousands per run, and pathlib's parsing cost more than the I/O.
        return f"{self._root}/{sha256[:2]}/{sha256}"

    def has(self, sha256: str) -> bool:
        return os.path.isfile(self._path(sha256))

    def held(self) -> set[str]:
        """Every hash held, from one listing per sub-folder rather than a stat per file."""
        if not self.root.is_dir():
            return set()
        return {
            entry.name
            for sub in os.scandir(self.root)
            if sub.is_dir()
            for entry in os.scandir(sub.path)
            if "." not in entry.name
        }  # "x.<pid>.partial": being written

    def _put(self, sha256: str, data: bytes) -> None:
        path = self._path(sha256)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}-{threading.get_ident()}.partial"
        try:
            with naming(os.path.dirname(path)), open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:  # a full disk, say: leave no partial file behind (a kill's is pruned later)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _prune(self, keep: set[str]) -> None:
        if self.root.is_dir():
            for sub in os.scandir(self.root):
                for entry in os.scandir(sub.path):
                    if entry.name not in keep:
                        os.unlink(entry.path)


class FileStore(_FilesByHash):
    """ingest's files by content hash. Ingest hard-links its outputs to them, so a file it took in an
    earlier run is neither read nor written again (nothing writes into data/ingested in place)."""

    def put(self, sha256: str, data: bytes) -> None:
        if not self.has(sha256):
            self._put(sha256, data)
            os.chmod(self._path(sha256), 0o444)  # as DVC does for linked files: no writing through a link

    def link(self, sha256: str, target: str | Path) -> None:
        try:
            os.link(self._path(sha256), target)
        except OSError:  # a file system without hard links
            shutil.copyfile(self._path(sha256), target)

    def link_all(self, links: Iterable[tuple[str, str]]) -> None:
        """`link` each (sha256, target), the targets' folders made first. Two threads, each taking one
        half of the (sorted) targets: links into two folders run at once, into one folder in turn."""
        links = list(links)
        for folder in {os.path.dirname(target) for _, target in links}:
            os.makedirs(folder, exist_ok=True)
        half = len(links) // 2
        with ThreadPoolExecutor(2) as threads:
            list(threads.map(self._link_each, (links[:half], links[half:])))

    def _link_each(self, links: list[tuple[str, str]]) -> None:
        for sha256, target in links:
            self.link(sha256, target)

    def prune(self, keep: set[str]) -> None:
        """Keep exactly the files of `keep` (this run's)."""
        self._prune(keep)


class ArrayCache(_FilesByHash):
    """preprocess's (size, size) uint8 arrays by content hash, one raw file each."""

    def __init__(self, folder: Path, key: str, size: int):
        super().__init__(folder / key)
        self.folder, self.key, self.size = folder, key, size

    def copy_to(self, sha256: str, out) -> bool:
        """Append the array's bytes to the unbuffered binary file `out`, copied by the kernel rather
        than through Python (most of an incremental preprocess is this copy); False if not held."""
        try:
            source = os.open(self._path(sha256), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            left = self.size * self.size
            if os.fstat(source).st_size != left:  # cannot happen with atomic writes; never trust it anyway
                return False
            try:
                while left:
                    left -= os.copy_file_range(source, out.fileno(), left)
            except (AttributeError, OSError):  # not Linux, or a file system that refuses: copy through Python
                os.lseek(source, -left, os.SEEK_END)
                out.write(os.read(source, left))
            return True
        finally:
            os.close(source)

    def put(self, sha256: str, array: np.ndarray) -> None:
        self._put(sha256, np.ascontiguousarray(array, np.uint8).tobytes())

    def prune(self, keep: set[str]) -> None:
        """Keep exactly the arrays of `keep` (this run's images); other namespaces go."""
        self._prune(keep)
        _drop_other_namespaces(self.folder, self.key)


def report(folder: Path, stage: str, reused: int, computed: int) -> str:
    """Record and describe how much of a stage's per-image work was reused."""
    write_json(folder / f"{stage}-reuse.json", {"reused": reused, "computed": computed})
    return f"{computed:,} computed, {reused:,} reused by content hash"
