import numpy as np
import pytest

from catdog.core.config import RegisterParams
from catdog.registry.gate import (
    Verdict,
    compare,
    decide,
    mcnemar_exact,
    wilson_interval,
)
from catdog.registry.store import Registry, RegistryError

BLESSED, REFUSED = Verdict(True, "test: blessed"), Verdict(False, "test: refused")


def _model(tmp_path, name: str, content: bytes):
    path = tmp_path / f"{name}.keras"
    path.write_bytes(content)
    return path


def _card(accuracy: float) -> dict:
    return {"metrics": {"accuracy": accuracy}, "params": {}, "data_fingerprint": "d", "code_revision": "c"}


def _register(registry: Registry, model, accuracy: float, verdict: Verdict = BLESSED):
    return registry.register(model, _card(accuracy), verdict, compared_with=registry.state()["production"])


def _outcomes(both: int, only_candidate: int, only_production: int, neither: int):
    candidate = [True] * both + [True] * only_candidate + [False] * only_production + [False] * neither
    production = [True] * both + [False] * only_candidate + [True] * only_production + [False] * neither
    return np.array(candidate), np.array(production)


def test_statistics_match_textbook_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375)  # 2 * (1 + 10) / 1024
    low, high = wilson_interval(150, 188)
    assert (low, high) == pytest.approx((0.7348, 0.8491), abs=2e-4)  # worked by hand


def test_the_gate_decides_on_the_same_images():
    params = RegisterParams(min_accuracy=0.6, max_p_value=0.05)
    truly_worse = compare(*_outcomes(120, 2, 20, 46), "v0001")  # 122 vs 140 of 188
    verdict = decide(truly_worse.candidate_accuracy, params, "v0001", truly_worse)
    assert not verdict.production and "significantly worse than production" in verdict.reason
    assert (
        "McNemar p = 0.000121" in verdict.reason
    )  # 2 * (1 + 22 + 231) / 2**22 and "on the same 188 images" in verdict.reason

    within_noise = compare(*_outcomes(130, 8, 11, 39), "v0001")  # 3 images worse: noise
    verdict = decide(within_noise.candidate_accuracy, params, "v0001", within_noise)
    assert verdict.production and "not significantly worse" in verdict.reason and "-0.0160" in verdict.reason

    truly_better = compare(*_outcomes(120, 20, 2, 46), "v0001")
    assert decide(truly_better.candidate_accuracy, params, "v0001", truly_better).production

    too_low = decide(0.55, params, "v0001", truly_better)
    assert not too_low.production and "below register.min_accuracy" in too_low.reason
    first = decide(0.7, params, None, None)
    assert first.production and "first production model" in first.reason
    missing = decide(0.7, params, "v0003", None, "model v0003 ... was changed or damaged")
    assert missing.production and "production v0003 cannot be scored" in missing.reason


def test_the_registry_stores_the_verdict_and_refuses_a_stale_one(tmp_path):
    registry = Registry(tmp_path / "registry")
    low = _register(registry, _model(tmp_path, "a", b"a"), 0.55, REFUSED)
    assert (low.version, low.production) == ("v0001", False) and registry.state()["production"] is None
    first = _register(registry, _model(tmp_path, "b", b"b"), 0.80)
    assert first.production and registry.card("production")["version"] == "v0002"
    assert registry.card("v0001")["status"] == "candidate"
    with pytest.raises(RegistryError, match="production changed from None to v0002 while this model was judged"):
        registry.register(_model(tmp_path, "c", b"c"), _card(0.9), BLESSED, compared_with=None)
    assert registry.versions() == ["v0001", "v0002"]


def test_rollback_restores_the_previous_production(tmp_path):
    registry = Registry(tmp_path / "registry")
    _register(registry, _model(tmp_path, "a", b"a"), 0.7)
    _register(registry, _model(tmp_path, "b", b"b"), 0.9)
    assert registry.rollback() == ("v0002", "v0001")
    assert registry.state()["production"] == "v0001"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()


def test_promoting_a_refused_version_needs_a_reason_and_the_same_model_is_registered_once(tmp_path):
    registry = Registry(tmp_path / "registry")
    model = _model(tmp_path, "a", b"a")
    _register(registry, model, 0.5, REFUSED)
    again = _register(registry, model, 0.5, REFUSED)
    assert again.already_registered and registry.versions() == ["v0001"]
    with pytest.raises(RegistryError, match="v0001 was refused by the gate: test: refused. To promote it anyway"):
        registry.promote("v0001")
    assert registry.promote("v0001", force="the fixed test set says it is fine") == "v0001"
    assert registry.state()["production"] == "v0001"
    events = (tmp_path / "registry/events.jsonl").read_text()
    assert '"reason": "forced: the fixed test set says it is fine"' in events
    with pytest.raises(RegistryError, match="no model version 'v0009'"):
        registry.promote("v0009")


def test_a_tampered_model_is_refused(tmp_path):
    registry = Registry(tmp_path / "registry")
    _register(registry, _model(tmp_path, "a", b"good"), 0.9)
    (tmp_path / "registry/versions/v0001/model.keras").write_bytes(b"evil")
    with pytest.raises(RegistryError, match="does not match its registered sha256"):
        registry.model_path("production")


def test_empty_registry_says_what_to_do(tmp_path):
    with pytest.raises(RegistryError, match="no production model yet: run `dvc repro`"):
        Registry(tmp_path / "registry").model_path("production")
