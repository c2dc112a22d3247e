"""Hostile and broken inputs through the real ingest, validate and preprocess stages.

Every input is generated here. Each test asserts the exact accepted / rejected outcome and
that nothing outside the stage's output folder was written.
"""

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catdog.core.config import IngestParams, PreprocessParams, ValidateParams
from catdog.data import intake, validation
from catdog.data.images import load_model_input
from catdog.data.sources import IngestError
from catdog.stages import preprocess
from tests.conftest import MAX_PIXELS, image_bytes, make_project, run, set_params


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _gray(value: int, size=(48, 40)) -> Image.Image:
    return Image.new("L", size, value)


def _valid_forms() -> dict[str, bytes]:
    """Valid images in unusual forms; each is a flat field whose gray value we can predict."""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    wide = Image.new("L", (60, 20), 0)
    wide.paste(255, (0, 0, 30, 20))  # left half white
    first, second = _gray(200), _gray(10)
    palette = _gray(120).convert("P")
    return {
        "png-named.jpg": _encode(_gray(100), "PNG"),
        "cmyk.jpg": _encode(Image.new("CMYK", (48, 40), (0, 0, 0, 128)), "JPEG", quality=95),
        "sixteen-bit.png": _encode(Image.fromarray(np.full((40, 48), 40000, np.uint16)), "PNG"),
        "palette.png": _encode(palette, "PNG"),
        "rgba.png": _encode(Image.new("RGBA", (48, 40), (0, 0, 0, 0)), "PNG"),
        "gray.jpg": _encode(_gray(90), "JPEG", quality=95),
        "animated.gif": _encode(first.convert("P"), "GIF", save_all=True, append_images=[second.convert("P")]),
        "picture.webp": _encode(_gray(150).convert("RGB"), "WEBP", lossless=True),
        "picture.bmp": _encode(_gray(60).convert("RGB"), "BMP"),
        "picture.tiff": _encode(_gray(170), "TIFF"),
        "exif-rotated.jpg": _encode(wide.convert("RGB"), "JPEG", quality=95, exif=exif),
    }


EXPECTED_GRAY = {
    "png-named.jpg": 100,
    "cmyk.jpg": 127,
    "sixteen-bit.png": 156,
    "palette.png": 120,
    "rgba.png": 255,
    "gray.jpg": 90,
    "animated.gif": 200,
    "picture.webp": 150,
    "picture.bmp": 60,
    "picture.tiff": 170,
}


def _broken_forms(good_jpeg: bytes) -> dict[str, str]:
    return {
        "empty.jpg": b"",
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 3],
        "page.jpg": b"<!DOCTYPE html><html><body>Not found</body></html>",
        "random.jpg": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


def _bomb_png() -> bytes:
    """A 20000x20000 PNG of a few kB: 400 megapixels if anyone decoded it."""
    return _encode(Image.new("1", (20000, 20000)), "PNG")


def _snapshot(root: Path, skip: Path) -> dict[str, float]:
    """Every file below root (not below skip) with its modification time."""
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if p.is_file() and skip not in p.parents and p != skip}


def test_every_kind_of_file_gets_the_right_outcome(tmp_path):
    source = tmp_path / "photos"
    forms = _valid_forms()
    good_jpeg = forms["gray.jpg"]
    files = {f"cat/{name}": data for name, data in forms.items()}
    files |= {f"dog/{i}.jpg": image_bytes("dog", (50 + i, 40), "JPEG", seed=i) for i in range(12)}
    files |= {f"dog/{name}": data for name, data in _broken_forms(good_jpeg).items()}
    files |= {
        "dog/tiny.png": image_bytes("dog", (10, 10)),
        "dog/bomb.png": _bomb_png(),
        "cat/.DS_Store": b"\0\0\0\1Bud1",
        "cat/Thumbs.db": b"\xd0\xcf\x11\xe0",
        "__MACOSX/cat/._1.jpg": b"\0\5\26\7",
        "unlabelled/x.jpg": good_jpeg,
        ".hidden/cat.9.jpg": good_jpeg,
        "dog/again-0.jpg": image_bytes("dog", (50, 40), "JPEG", seed=0),  # same class twice
        "cat/looks-like-dog.jpg": image_bytes("dog", (51, 40), "JPEG", seed=1),
    }  # both labels
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    before = _snapshot(tmp_path, tmp_path / "out")

    out = tmp_path / "out"
    intake.ingest(IngestParams(), out / "ingested", source, progress=False)
    result = validation.validate(
        ValidateParams(workers=1, min_side=16, max_pixels=40_000_000, max_rejected_share=0.6),
        out / "ingested",
        out / "validated",
        out / "validate.json",
        progress=False,
    )
    reasons = dict(zip(result.rejected["path"], result.rejected["reason"]))
    expected_rejections = {
        "cat/.DS_Store": "OS junk file",
        "cat/Thumbs.db": "OS junk file",
        "__MACOSX/cat/._1.jpg": "OS junk file",
        "unlabelled/x.jpg": "no label",
        ".hidden/cat.9.jpg": "hidden file",
        "images/dog/empty.jpg": "not an image",
        "images/dog/truncated.jpg": "cannot decode",
        "images/dog/page.jpg": "not an image",
        "images/dog/random.jpg": "not an image",
        "images/dog/tiny.png": "width below validate.min_side",
        "images/dog/bomb.png": "too large: 20000x20000",
        "images/dog/again-0.jpg": "duplicate of images/dog/0.jpg (kept once)",
        "images/cat/looks-like-dog.jpg": "labelled both cat and dog",
        "images/dog/1.jpg": "labelled both cat and dog",
    }
    assert set(reasons) == set(expected_rejections)
    for path, reason in expected_rejections.items():
        assert reason in reasons[path], (path, reasons[path])

    accepted = set(result.accepted["path"])
    assert accepted == (
        {f"images/cat/{name}" for name in forms} | {f"images/dog/{i}.jpg" for i in range(12)} - {"images/dog/1.jpg"}
    )
    assert _snapshot(tmp_path, tmp_path / "out") == before

    # Every good file reaches preprocessing, converted correctly.
    preprocess.run(
        PreprocessParams(image_size=32, workers=1),
        out / "validated",
        out / "ingested",
        out / "pre",
        progress=False,
        max_pixels=MAX_PIXELS,
    )
    indexed = pd.concat(pd.read_csv(out / "pre" / split / "index.csv") for split in ("train", "val", "test"))
    assert set(indexed["path"]) == accepted
    for name, gray in EXPECTED_GRAY.items():
        array = load_model_input(out / "ingested/images/cat" / name, 32, max_pixels=MAX_PIXELS)
        assert abs(float(array.mean()) - gray) <= 3, (name, array.mean())
    rotated = load_model_input(out / "ingested/images/cat/exif-rotated.jpg", 32, "pad", max_pixels=MAX_PIXELS)
    # 60x20 landscape + orientation 6 = 20x60 portrait: gray bars left and right, the white half on top
    assert (rotated[:, :8] == 128).all() and (rotated[:, -8:] == 128).all()
    assert rotated[:14, 13:19].mean() > 200 and rotated[18:, 13:19].mean() < 60


def _tar_member(name: str, data: bytes = b"", kind=tarfile.REGTYPE, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def test_hostile_tar_members_are_refused_and_nothing_escapes(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    good = {f"cat/{i}.jpg": image_bytes("cat", seed=i) for i in range(3)} | {
        f"dog/{i}.jpg": image_bytes("dog", seed=i) for i in range(3)
    }
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in good.items():
            tf.addfile(*_tar_member(name, data))
        tf.addfile(*_tar_member("../escaped-cat.jpg", good["cat/0.jpg"]))
        tf.addfile(*_tar_member("/tmp/absolute-cat.jpg", good["cat/0.jpg"]))
        tf.addfile(*_tar_member("cat/link.jpg", kind=tarfile.SYMTYPE, linkname="/etc/passwd"))
        tf.addfile(*_tar_member("cat/hard.jpg", kind=tarfile.LNKTYPE, linkname="../../outside.jpg"))
        tf.addfile(*_tar_member("cat/device.jpg", kind=tarfile.CHRTYPE))
        tf.addfile(*_tar_member("dog/fifo.jpg", kind=tarfile.FIFOTYPE))
    before = _snapshot(tmp_path, tmp_path / "out")
    result = intake.ingest(IngestParams(), tmp_path / "out", archive, progress=False)
    skipped = dict(zip(result.skipped["source"], result.skipped["reason"]))
    assert skipped == {
        "../escaped-cat.jpg": "unsafe path (absolute or '..')",
        "/tmp/absolute-cat.jpg": "unsafe path (absolute or '..')",
        "cat/link.jpg": "link to '/etc/passwd'",
        "cat/hard.jpg": "link to '../../outside.jpg'",
        "cat/device.jpg": "device or special file",
        "dog/fifo.jpg": "device or special file",
    }
    assert sorted(result.manifest["source"]) == sorted(good)
    assert _snapshot(tmp_path, tmp_path / "out") == before
    assert not Path("/tmp/absolute-cat.jpg").exists()
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert all(not p.is_symlink() for p in written) and len(written) == len(good) + 2


def test_hostile_zip_members_and_zip_bombs(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"train/cat.{i}.jpg", image_bytes("cat", seed=i))
            zf.writestr(f"train/dog.{i}.jpg", image_bytes("dog", seed=i))
        zf.writestr("../../cat.evil.jpg", image_bytes("cat"))
        zf.writestr("/abs/dog.evil.jpg", image_bytes("dog"))
        link = zipfile.ZipInfo("train/cat.link.jpg")
        link.external_attr = 0o120777 << 16  # a symlink, as Info-ZIP stores it
        zf.writestr(link, "/etc/passwd")
        zf.writestr("train/dog.bomb.jpg", b"\0" * 20_000_000)  # ~1000:1
    result = intake.ingest(IngestParams(), tmp_path / "out", archive, progress=False)
    skipped = dict(zip(result.skipped["source"], result.skipped["reason"]))
    assert skipped["../../cat.evil.jpg"] == "unsafe path (absolute or '..')"
    assert skipped["/abs/dog.evil.jpg"] == "unsafe path (absolute or '..')"
    assert skipped["train/cat.link.jpg"] == "symbolic link"
    assert "is over ingest.max_compression_ratio (zip bomb?)" in skipped["train/dog.bomb.jpg"]
    assert len(result.manifest) == 6
    assert not (tmp_path.parent / "cat.evil.jpg").exists()


def test_archive_over_the_total_size_limit_stops_ingest_and_keeps_the_old_output(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(5):
            zf.writestr(f"cat/{i}.jpg", os.urandom(200_000))
    (tmp_path / "out").mkdir()
    (tmp_path / "out/manifest.csv").write_text("previous\n")
    with pytest.raises(IngestError, match=r"uncompressed content exceeds ingest.max_archive_bytes \(500,000 bytes\)"):
        intake.ingest(IngestParams(max_archive_bytes=500_000), tmp_path / "out", archive, progress=False)
    assert (tmp_path / "out/manifest.csv").read_text() == "previous\n"


def test_hostile_archive_through_the_real_dvc_stages(tmp_path):
    """The CLI stages under `dvc repro`: exact outcome, and only data/ (and dvc.lock) written."""
    project = make_project(tmp_path / "project")
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tf:
        for i in range(12):
            tf.addfile(*_tar_member(f"PetImages/Cat/{i}.jpg", image_bytes("cat", (40 + i, 40), "JPEG", seed=i)))
            tf.addfile(*_tar_member(f"PetImages/Dog/{i}.jpg", image_bytes("dog", (40 + i, 40), "JPEG", seed=i)))
        tf.addfile(*_tar_member("PetImages/Cat/666.jpg", b""))
        tf.addfile(*_tar_member("PetImages/Dog/11702.jpg", b"GIF89a-truncated"))
        tf.addfile(*_tar_member("../PetImages/Cat/evil.jpg", b"x"))
        tf.addfile(*_tar_member("PetImages/Cat/Thumbs.db", b"x"))
    set_params(project, {"ingest": {"source": str(archive)}})
    before = _snapshot(tmp_path, project / "data")
    run(["dvc", "repro", "preprocess"], project)
    after = _snapshot(tmp_path, project / "data")
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert {Path(p).relative_to(project).parts[0] for p in changed} <= {"dvc.lock", ".dvc"}
    rejected = pd.read_csv(project / "data/validated/rejected.csv")
    assert sorted(rejected["path"]) == [
        "../PetImages/Cat/evil.jpg",
        "PetImages/Cat/Thumbs.db",
        "images/PetImages/Cat/666.jpg",
        "images/PetImages/Dog/11702.jpg",
    ]
    counts = json.loads((project / "data/metrics/validate.json").read_text())
    assert (counts["accepted"], counts["rejected"]) == (24, 4)
    meta = json.loads((project / "data/preprocessed/meta.json").read_text())
    assert sum(meta["counts"].values()) == 24
