"""What the served model saw and said: an append-only log, one JSON line per uploaded image.

    data/serving/predictions-2026-12-02.jsonl   a file per UTC day
    data/serving/inputs/ab/ab12...e9.jpg         the uploads themselves, by content hash (serve.keep_inputs)

With serve.shadow, the shadow candidate's answers are records too (`"shadow": true`, beside
production's answer to the same image), in the same files or, without a prediction log, in
data/serving/shadow/.

Each request's lines are appended with one write() on a file opened O_APPEND, before its answer
is sent: a killed server leaves every line it wrote whole and readable (an answered image is
always in the log), and two servers sharing the folder never interleave inside a line. The
write goes to the page cache (no fsync per request), so a power cut can lose the last seconds.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

log = logging.getLogger("catdog.serving")

LOG_PREFIX = "predictions-"
SHADOW_LOG = "shadow"  # the shadow's own log folder, when serving logs nothing else
COLUMNS = [
    "time",
    "request",
    "file",
    "sha256",
    "model_version",
    "p_dog",
    "label",
    "latency_ms",
    "format",
    "width",
    "height",
    "aspect",
    "brightness",
    "contrast",
    "error",
]
SHADOW_COLUMNS = ["shadow", "production_version", "production_p_dog", "production_label"]  # shadow records only
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PredictionLog:
    """Appends records to the day's file; opens the next day's file when the date changes."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)  # made by the first append (and again if it vanishes)
        self._day, self._fd = None, None

    def append(self, records: Iterable[dict]) -> None:
        records = list(records)
        if not records:
            return
        day = records[0]["time"][:10]
        stat = os.fstat(self._fd) if day == self._day else None  # one fstat per append
        if stat is None or stat.st_nlink == 0:  # a new day, or the file was removed
            self.close()
            self.folder.mkdir(parents=True, exist_ok=True)  # made again if the folder vanished
            self._fd = os.open(self.folder / f"{LOG_PREFIX}{day}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._day = day
            stat = os.fstat(self._fd)
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        before = stat.st_size
        if os.write(self._fd, data) != len(data):  # a full disk can take part of a write
            os.ftruncate(self._fd, before)  # a torn line would swallow the next record with it
            raise OSError(errno.ENOSPC, "No space left on device (a short write)", str(self.folder))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._day = None


GAPS_FILE = "gaps.jsonl"


class Recorder:
    """Records that must never fail a request: what cannot be written (a full or read-only disk,
    a vanished folder) is counted, said once in the server's log, and once writing works again a
    gap record (since, until, how many, why) goes to gaps.jsonl, which `catdog monitor` reports."""

    def __init__(self, write: Callable[[list], None], folder: Path, what: str, on_lost=lambda count: None):
        self.write, self.folder, self.what, self.on_lost = write, Path(folder), what, on_lost
        self.lost, self.since, self.why = 0, None, None

    def append(self, records: list) -> None:
        try:
            self.write(records)
        except OSError as error:
            self._lose(len(records), error)
            return
        if self.lost:
            self._close_gap()

    def _lose(self, count: int, error: OSError) -> None:
        self.on_lost(count)
        if not self.lost:
            self.since, self.why = utc_now().isoformat(timespec="seconds"), f"{error.strerror or error}"
            log.error("serve: cannot record %s (%s); answering goes on, counting what is lost", self.what, error)
        self.lost += count

    def _close_gap(self) -> None:
        gap = {"what": self.what, "since": self.since, "until": utc_now().isoformat(timespec="seconds")}
        gap.update(lost=self.lost, why=self.why)
        try:
            with open(self.folder / GAPS_FILE, "a", encoding="utf-8") as gaps:
                gaps.write(json.dumps(gap) + "\n")
        except OSError:
            return  # still failing there: the gap stays open
        log.warning("serve: recording %s again; %d records were lost since %s", self.what, self.lost, self.since)
        self.lost, self.since, self.why = 0, None, None


def read_gaps(folder: Path, since: dt.datetime | None = None) -> list[dict]:
    """The recording gaps that ended at or after `since`."""
    path = Path(folder) / GAPS_FILE
    if not path.exists():
        return []
    gaps = [json.loads(line) for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line]
    return [g for g in gaps if since is None or dt.datetime.fromisoformat(g["until"]) >= since]


def log_files(folder: Path, since: dt.datetime | None = None) -> list[Path]:
    """The day files that can hold records at or after `since`, oldest first."""
    files = sorted(Path(folder).glob(f"{LOG_PREFIX}*.jsonl"))
    if since is None:
        return files
    first_day = since.astimezone(dt.timezone.utc).date().isoformat()
    return [f for f in files if f.stem[len(LOG_PREFIX) :] >= first_day]


def read_log(folder: Path, since: dt.datetime | None = None, shadow: bool = False) -> pd.DataFrame:
    """Every whole record at or after `since` (a line cut short by a crash mid-write is skipped): the
    answers served, or with `shadow` the shadow candidate's answers instead."""
    rows = []
    for path in log_files(folder, since):
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    frame = pd.DataFrame(rows, columns=COLUMNS + SHADOW_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame["shadow"] = frame["shadow"].fillna(False).astype(bool)
    if since is not None:
        frame = frame[frame["time"] >= pd.Timestamp(since)]
    served = frame[~frame["shadow"]] if not shadow else frame[frame["shadow"]]
    return served[COLUMNS + SHADOW_COLUMNS if shadow else COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------- kept inputs


class InputStore:
    """Uploaded images by content hash. A file appears whole (written aside, then linked into
    place) and is never overwritten: the same photo uploaded twice is kept once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path_for(self, sha256: str, image_format: str | None) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.{EXTENSIONS.get(image_format or '', 'img')}"

    def keep(self, data: bytes, sha256: str, image_format: str | None) -> Path:
        target = self.path_for(sha256, image_format)
        if not target.exists():
            place_new_file(data, target)
        return target

    def find(self, sha256: str) -> Path | None:
        return next(iter(sorted((self.folder / sha256[:2]).glob(f"{sha256}.*"))), None)

    def all(self) -> list[Path]:
        return sorted(self.folder.glob("*/*.*"))


def place_new_file(data: bytes, target: Path, staging: Path | None = None) -> bool:
    """Write `data` at `target` whole or not at all, never replacing a file that is there: False
    when `target` exists (someone else placed it first, even at the same moment). The bytes are
    written in `staging` first (default: beside `target`), so that a folder someone lists (a
    training source) never shows a half-written or temporary file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(staging or target.parent)
    staging.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=staging)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, target)  # fails if target exists: no overwrite, never half written
        except OSError as error:
            if error.errno != errno.EXDEV or staging == target.parent:
                raise
            return place_new_file(data, target)  # another file system: stage beside the target
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
