"""`catdog monitor` on a made-up prediction log whose drift, confidence and accuracy are known."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from catdog.monitoring.monitor import parse_since
from catdog.monitoring.prediction_log import PredictionLog
from catdog.registry.gate import wilson_interval
from tests.conftest import run
from tests.test_serve import constant_model, serve_project


def _register(project, p_dog_logit: float, profile: pd.DataFrame, test_p_dog: np.ndarray) -> str:
    from catdog.core.config import load_params
    from catdog.registry.gate import Verdict
    from catdog.registry.store import Registry

    path = project / f"m{p_dog_logit}.keras"
    constant_model(p_dog_logit).save(path)
    registry = Registry(project / "data" / "registry")
    card = {
        "params": load_params(project / "params.yaml").to_dict(),
        "metrics": {"accuracy": 0.9},
        "training": {},
        "data_fingerprint": "test",
        "code_revision": "test",
    }
    first = registry.state()["production"] is None
    tests = pd.DataFrame({"path": [f"t{i}.jpg" for i in range(len(test_p_dog))], "actual": "cat", "p_dog": test_p_dog})
    return registry.register(
        path,
        card,
        Verdict(first, "test"),
        compared_with=registry.state()["production"],
        data_profile=profile,
        test_predictions=tests,
    ).version


def records(version: str, start: dt.datetime, p_dog: np.ndarray, brightness: np.ndarray, prefix: str) -> list[dict]:
    return [
        {
            "time": (start + dt.timedelta(minutes=i)).isoformat(timespec="milliseconds"),
            "request": f"r{i}",
            "file": f"{prefix}{i}.jpg",
            "sha256": f"{prefix}{i:060d}",
            "model_version": version,
            "p_dog": float(p),
            "label": "dog" if p >= 0.5 else "cat",
            "latency_ms": 50.0,
            "format": "JPEG",
            "width": 500,
            "height": 375,
            "aspect": 1.3333,
            "brightness": float(b),
            "contrast": 60.0,
            "error": None,
        }
        for i, (p, b) in enumerate(zip(p_dog, brightness))
    ]


def test_monitor_reports_served_counts_confidence_drift_shift_and_online_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    project = serve_project(tmp_path)
    profile = pd.DataFrame(
        {
            "sha256": [f"train{i}" for i in range(400)],
            "label": ["cat", "dog"] * 200,
            "width": rng.integers(400, 600, 400),
            "height": rng.integers(300, 450, 400),
            "brightness": rng.normal(110, 15, 400),
            "contrast": rng.normal(60, 5, 400),
        }
    )
    profile["width"], profile["height"] = 500, 375  # served photos have the same size; only brightness moves
    test_p_dog = np.concatenate([rng.uniform(0.0, 0.3, 100), rng.uniform(0.7, 1.0, 100)])  # a sure model
    production = _register(project, 0.0, profile, test_p_dog)

    day = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    p_dog = np.concatenate([np.full(25, 0.55), np.full(35, 0.9), np.full(40, 0.1)])  # 25 of 100 within 0.1 of 0.5
    served = records(production, day, p_dog, rng.normal(200, 10, 100), "a")  # far brighter: drift
    old = records(production, day - dt.timedelta(days=10), np.full(5, 0.9), np.full(5, 110.0), "old")
    log = PredictionLog(project / "data" / "serving")
    for record in old + served:  # a file per day, the old one outside the window
        log.append([record])
    log.append([{**served[0], "request": "bad", "p_dog": None, "label": None, "error": "not an image", "sha256": "x"}])
    labels = project / "data" / "serving" / "labels"
    labels.mkdir(parents=True)
    truth = {r["sha256"]: r["label"] for r in served[:40]}  # 40 labelled: 30 right, 10 wrong
    for sha in list(truth)[30:]:
        truth[sha] = "cat" if truth[sha] == "dog" else "dog"
    for sha, label in truth.items():
        (labels / f"{sha}.json").write_text(
            json.dumps(
                {
                    "sha256": sha,
                    "label": label,
                    "who": "ann",
                    "time": day.isoformat(),
                    "model_version": production,
                    "p_dog": 0.5,
                    "guess": "dog",
                    "photo": None,
                }
            )
        )

    report = json.loads(
        run(["catdog", "--project", str(project), "monitor", "--since", "24h", "--json"], project).stdout
    )
    facts = report["versions"][production]
    assert (report["served"], report["rejected"]) == (100, 1)
    assert (facts["served"], facts["uncertain"], facts["uncertain_share"]) == (100, 25, 0.25)
    assert (facts["labelled"], facts["correct"], facts["accuracy"]) == (40, 30, 0.75)
    assert facts["accuracy_ci95"] == pytest.approx(list(wilson_interval(30, 40)))
    drift = report["drift"]
    assert drift["drifted"] and drift["new_images"] == 100
    assert any(f.startswith("brightness distribution differs") for f in drift["findings"])
    assert not any(f.startswith(("image width", "aspect")) for f in drift["findings"])
    shift = report["prediction_shift"]
    assert shift["shifted"] and shift["served"] == 100 and shift["test_images"] == 200, shift

    text = run(["catdog", "--project", str(project), "monitor", "--since", "24h"], project).stdout
    assert f"- {production}: 100 images, 25.0% low-confidence" in text
    assert "online accuracy 75.0% [" in text and "on 40 labelled photos" in text
    assert "DRIFT: drift in the 100 new images" in text and "SHIFT: shifted" in text
    plot = project / "data" / "serving" / "monitor.png"
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"

    week = json.loads(run(["catdog", "--project", str(project), "monitor", "--since", "14d", "--json"], project).stdout)
    assert week["served"] == 105


def test_since_takes_durations_and_dates_and_says_the_fix_otherwise():
    now = dt.datetime(2026, 12, 2, 12, tzinfo=dt.timezone.utc)
    assert parse_since("24h", now) == now - dt.timedelta(hours=24)
    assert parse_since("90m", now) == now - dt.timedelta(minutes=90)
    assert parse_since("2026-12-01", now) == dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    from catdog.core.errors import CatdogError

    with pytest.raises(CatdogError, match="use a duration such as 24h"):
        parse_since("yesterday", now)
