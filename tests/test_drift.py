"""Drift: the images new since production's training data, compared with that data by real GX.
The registry's side and a real `dvc repro` are in test_continuous (the nights of a growing folder)."""

import json

import pytest

from catdog.core.config import IngestParams, ValidateParams
from catdog.data import intake, validation
from catdog.data.drift import PROFILE_COLUMNS, ProductionData
from tests.conftest import image_bytes
from tests.conftest import inverted as inverted_image


def _photos(folder, seed: int, per_class: int = 15, inverted: bool = False):
    """Synthetic cats and dogs of write_images' sizes; `inverted` ones are far brighter."""
    for label in ("cat", "dog"):
        for i in range(per_class):
            data = image_bytes(label, (40 + i, 36 + 2 * i), "JPEG", seed=seed + i + (500 if label == "dog" else 0))
            data = inverted_image(data) if inverted else data
            path = folder / label / f"{seed}-{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return folder


def _validate(tmp_path, name, photos, production=None, **params):
    intake.ingest(IngestParams(), tmp_path / name / "ingested", photos, progress=False)
    return validation.validate(
        ValidateParams(workers=1, **params),
        tmp_path / name / "ingested",
        tmp_path / name / "validated",
        tmp_path / name / "validate.json",
        progress=False,
        production=production,
    )


@pytest.fixture
def production(tmp_path):
    accepted = _validate(tmp_path, "production", _photos(tmp_path / "before", seed=0)).accepted
    return ProductionData("v0001", accepted[PROFILE_COLUMNS], rejected_share=0.0)


def test_new_images_like_production_data_are_no_drift(tmp_path, production):
    _validate(tmp_path, "now", _photos(tmp_path / "similar", seed=100), production)
    drift = json.loads((tmp_path / "now/validated/drift.json").read_text())
    assert drift["drifted"] is False and drift["new_images"] == 30
    assert drift["summary"] == "no drift: the 30 new images look like production v0001's training data"
    assert set(drift["kl_divergence"]) == {"width", "height", "aspect", "brightness", "contrast"}


def test_brighter_images_are_drift_a_warning_by_default_and_a_failure_when_asked(tmp_path, production, capsys):
    photos = _photos(tmp_path / "bright", seed=200, inverted=True)
    _validate(tmp_path, "warn", photos, production)
    drift = json.loads((tmp_path / "warn/validated/drift.json").read_text())
    assert drift["drifted"] and any(f.startswith("brightness distribution differs") for f in drift["findings"])
    assert "validate: WARNING: drift in the 30 new images vs production v0001's: brightness" in capsys.readouterr().out
    assert (tmp_path / "warn/validated/accepted.csv").exists()

    with pytest.raises(validation.ValidationError, match="brightness distribution differs.*validate.fail_on_drift"):
        _validate(tmp_path, "fail", photos, production, fail_on_drift=True)
    assert not (tmp_path / "fail/validated/accepted.csv").exists()
    assert json.loads((tmp_path / "fail/validated/drift.json").read_text())["drifted"]


def test_too_few_new_images_or_no_production_say_so(tmp_path, production):
    _validate(tmp_path, "few", _photos(tmp_path / "few", seed=300, per_class=5), production)
    drift = json.loads((tmp_path / "few/validated/drift.json").read_text())
    assert not drift["drifted"] and "10 images new since production v0001's training data: too few" in drift["summary"]
    _validate(tmp_path, "first", _photos(tmp_path / "first", seed=400))
    drift = json.loads((tmp_path / "first/validated/drift.json").read_text())
    assert drift["summary"] == "no production model yet: nothing to compare the data with"
