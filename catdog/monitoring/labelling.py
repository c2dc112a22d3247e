"""The labelling queue: the photos the production model is least sure of, labelled and fed back.

Candidates are the uploads `catdog serve` kept (serve.keep_inputs) and the photos in the inbox
folder (monitor.inbox). Duplicates by content hash count once; photos already in the training
data or already answered leave the queue. The rest are ranked by the production model's margin
|p_dog - 0.5|, the least sure first (ties: the earliest first).

An answer writes the photo into the training source, `<ingest.source>/cat/<sha256>.jpg` (or
dog/), or into monitor.labelled where the source is an archive or the embedded set, whole and
never over an existing file, and a label record `data/serving/labels/<sha256>.json` (who, when,
the model's guess). One file lock serialises answers across servers: two people answering the
same photo get one label and a clear refusal. The next `dvc repro` sees the photo through the
source stage like any other new file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from catdog.core.errors import CatdogError
from catdog.core.files import locked, read_json, write_json
from catdog.monitoring.prediction_log import EXTENSIONS, InputStore, place_new_file

CLASSES = ("cat", "dog")
ANSWERS = (*CLASSES, "not_cat_or_dog")
RECORD_COLUMNS = ["sha256", "label", "who", "time", "model_version", "p_dog", "guess", "photo"]
IMAGE_SUFFIXES = {f".{ext}" for ext in EXTENSIONS.values()} | {".jpeg", ".tiff"}


class LabelError(CatdogError):
    """An answer that cannot be taken; `status` is the HTTP status that says so."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LabelSetup:
    serving_dir: Path  # data/serving: kept inputs, label records, the lock
    destination: Path  # where answers write photos: the source folder, or monitor.labelled
    known_manifests: tuple[Path, ...]  # manifests whose sha256 column is the training data
    inbox: Path | None = None

    @property
    def records(self) -> Path:
        return self.serving_dir / "labels"


@dataclass(frozen=True)
class Candidate:
    sha256: str
    path: Path
    since: float  # when it arrived (file time): ties in the ranking go to the earliest


# ---------------------------------------------------------------- the queue


def candidates(setup: LabelSetup) -> list[Candidate]:
    """Kept uploads and inbox photos not yet in the training data nor answered, one per content."""
    known = training_hashes(setup) | answered_hashes(setup)
    found: dict[str, Candidate] = {}
    kept = [(path.stem, path) for path in InputStore(setup.serving_dir / "inputs").all()]
    for sha256, path in [*kept, *inbox_photos(setup.inbox)]:
        if sha256 in known:
            continue
        since = path.stat().st_mtime
        if sha256 not in found or since < found[sha256].since:
            found[sha256] = Candidate(sha256, path, since)
    return list(found.values())


def rank(items: list[Candidate], p_dog: dict[str, float]) -> list[Candidate]:
    """The least sure first: margin |p_dog - 0.5|, then the earliest."""
    return sorted(items, key=lambda c: (abs(p_dog[c.sha256] - 0.5), c.since, c.sha256))


_inbox_hashes: dict[tuple[str, int, int], str] = {}  # (path, mtime, size) -> sha256: the inbox is hashed once


def inbox_photos(inbox: Path | None) -> Iterator[tuple[str, Path]]:
    if inbox is None or not inbox.is_dir():
        return
    for path in sorted(inbox.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _inbox_hashes:
            _inbox_hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        yield _inbox_hashes[key], path


def training_hashes(setup: LabelSetup) -> set[str]:
    """Content already in the training data: the manifests, and what answers wrote since."""
    hashes = set()
    for manifest in setup.known_manifests:
        if manifest.exists():
            hashes |= set(pd.read_csv(manifest, usecols=["sha256"], dtype=str, keep_default_na=False)["sha256"])
    for label in CLASSES:
        folder = setup.destination / label
        if folder.is_dir():
            hashes |= {path.stem for path in folder.iterdir()}
    return hashes


def answered_hashes(setup: LabelSetup) -> set[str]:
    return {path.stem for path in setup.records.glob("*.json")} if setup.records.is_dir() else set()


def why_not_queued(setup: LabelSetup, sha256: str) -> str:
    """Why a photo is not (or no longer) in the queue, as the person answering should read it."""
    with _answer_lock(setup):  # an answer being written has its photo and its record, or neither
        return _why_not_queued(setup, sha256)


def _why_not_queued(setup: LabelSetup, sha256: str) -> str:
    earlier = setup.records / f"{sha256}.json"
    if earlier.exists():
        said = read_json(earlier)
        return f"this photo was already labelled '{said['label']}' by {said['who']} at {said['time']}"
    if sha256 in training_hashes(setup):
        return "this photo is already in the training data (same content): nothing to add"
    return "no such photo in the labelling queue (kept uploads and the inbox)"


# ---------------------------------------------------------------- answers


def _answer_lock(setup: LabelSetup):
    return locked(setup.serving_dir / "labels.lock")


def record_answer(
    setup: LabelSetup, candidate: Candidate, answer: str, who: str, model_version: str, p_dog: float
) -> dict:
    """Write the photo into the training data (cat or dog) and the label record; refused with the
    reason when it was answered already or its content is in the training data."""
    if answer not in ANSWERS:
        raise LabelError(f"answer {answer!r} is not one of {', '.join(ANSWERS)}", status=400)
    data = candidate.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != candidate.sha256:
        raise LabelError(f"{candidate.path} changed since it was queued: reload the queue", status=409)
    with _answer_lock(setup):
        earlier = setup.records / f"{candidate.sha256}.json"
        if earlier.exists() or candidate.sha256 in training_hashes(setup):
            raise LabelError(_why_not_queued(setup, candidate.sha256))
        photo = None
        if answer in CLASSES:
            photo = setup.destination / answer / f"{candidate.sha256}{_suffix(candidate.path)}"
            if not place_new_file(data, photo, staging=setup.serving_dir / ".staging"):
                raise LabelError(f"{photo} exists already: nothing was overwritten")
        record = {
            "sha256": candidate.sha256,
            "label": answer,
            "who": who,
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model_version": model_version,
            "p_dog": round(p_dog, 6),
            "guess": "dog" if p_dog >= 0.5 else "cat",
            "photo": str(photo) if photo else None,
        }
        write_json(earlier, record)
    return record


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    return ".jpg" if suffix == ".jpeg" else suffix if suffix in IMAGE_SUFFIXES else ".img"


def read_labels(serving_dir: Path) -> pd.DataFrame:
    """Every label record, oldest first."""
    records = [read_json(path) for path in sorted((Path(serving_dir) / "labels").glob("*.json"))]
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    return frame.sort_values(["time", "sha256"], ignore_index=True)


def export(serving_dir: Path, target: Path) -> int:
    """The label records as CSV for other tools; the number written."""
    from catdog.core.files import atomic_path

    frame = read_labels(serving_dir)
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    return len(frame)
