import json
import re
from pathlib import Path

import pandas as pd
import pytest

from catdog.core.config import IngestParams, ValidateParams
from catdog.data import intake, validation
from tests.conftest import image_bytes, write_images


def _validate(tmp_path, source, **params):
    intake.ingest(IngestParams(), tmp_path / "ingested", source, progress=False)
    return validation.validate(
        ValidateParams(workers=1, **params),
        tmp_path / "ingested",
        tmp_path / "validated",
        tmp_path / "metrics/validate.json",
        progress=False,
    )


def test_bad_files_are_rejected_by_name_with_reason_and_good_ones_kept(tmp_path):
    source = write_images(tmp_path / "src", per_class=10)
    good_jpeg = (source / "cat/0.jpg").read_bytes()
    (source / "cat/empty.jpg").write_bytes(b"")
    (source / "cat/truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (source / "dog/page.jpg").write_text("<html><body>404</body></html>")
    (source / "dog/noise.jpg").write_bytes(bytes(range(256)) * 8)
    (source / "dog/tiny.png").write_bytes(image_bytes("dog", (8, 8)))
    (source / "cat/copy-of-0.jpg").write_bytes(good_jpeg)  # same class twice: kept once
    (source / "dog/lookalike.jpg").write_bytes((source / "cat/1.jpg").read_bytes())  # both labels
    result = _validate(tmp_path, source, max_rejected_share=0.5)

    reasons = dict(zip(result.rejected["path"], result.rejected["reason"]))
    assert "not an image" in reasons["images/cat/empty.jpg"]
    assert "cannot decode" in reasons["images/cat/truncated.jpg"]
    assert "not an image" in reasons["images/dog/page.jpg"]
    assert "not an image" in reasons["images/dog/noise.jpg"]
    assert "width below validate.min_side" in reasons["images/dog/tiny.png"]
    assert reasons["images/cat/copy-of-0.jpg"] == "duplicate of images/cat/0.jpg (kept once)"
    assert "labelled both cat and dog" in reasons["images/dog/lookalike.jpg"]
    assert "labelled both cat and dog" in reasons["images/cat/1.jpg"]
    accepted = set(pd.read_csv(tmp_path / "validated/accepted.csv")["path"])
    assert accepted == {f"images/{c}/{i}.jpg" for c in ("cat", "dog") for i in range(10)} - {"images/cat/1.jpg"}
    saved = pd.read_csv(tmp_path / "validated/rejected.csv")
    assert set(saved["path"]) == set(reasons)
    metrics = json.loads((tmp_path / "metrics/validate.json").read_text())
    assert metrics["accepted"] == 19 and metrics["rejected"] == 8 and metrics["duplicates"] == 1
    assert (tmp_path / "validated/data_docs/index.html").exists()


def test_too_many_rejections_fail_with_a_clear_message_and_no_accepted_list(tmp_path):
    source = write_images(tmp_path / "src", per_class=5)
    for i in range(5):
        (source / f"cat/broken{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(
        validation.ValidationError,
        match=r"5 of 15 files \(33%\) were rejected, over "
        r"validate.max_rejected_share \(20%\)",
    ):
        _validate(tmp_path, source, max_rejected_share=0.2)
    assert (tmp_path / "validated/rejected.csv").exists()
    assert not (tmp_path / "validated/accepted.csv").exists()


def test_an_empty_class_fails(tmp_path):
    source = tmp_path / "src"
    write_images(source, per_class=6)
    for path in (source / "dog").iterdir():
        path.unlink()
    with pytest.raises(validation.ValidationError, match="no accepted images of class dog"):
        _validate(tmp_path, source)


def _pages(docs: Path) -> dict[str, str]:
    """Every Data Docs page, run ids and timestamps (which differ from run to run) blanked."""
    stamp = re.compile(
        r"\b1\d{9}\.\d+|\d{8}T\d{6}\.\d+Z|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?"
        r"|[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"
    )
    return {
        stamp.sub("*", str(page.relative_to(docs))): stamp.sub("*", page.read_text())
        for page in sorted(docs.rglob("*.html"))
    }


def test_data_docs_templates_are_compiled_once_and_the_pages_stay_the_same(tmp_path):
    source = write_images(tmp_path / "src", per_class=10)
    intake.ingest(IngestParams(), tmp_path / "ingested", source, progress=False)

    def run(out: str, cache_dir: Path | None):
        validation.validate(
            ValidateParams(workers=1),
            tmp_path / "ingested",
            tmp_path / out,
            tmp_path / "metrics.json",
            progress=False,
            cache_dir=cache_dir,
        )
        return tmp_path / out / "data_docs"

    plain = _pages(run("plain", None))
    first = run("first", tmp_path / "cache")
    compiled = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache/data-docs-templates").iterdir()}
    assert len(compiled) > 10  # index, page and component templates
    second = run("second", tmp_path / "cache")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache/data-docs-templates").iterdir()} == compiled
    assert _pages(first) == _pages(second) == plain
    assert any("images" in page for page in plain.values())
