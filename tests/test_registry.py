import pytest

from catdog.registry import Registry, RegistryError


def _model(tmp_path, name: str, content: bytes):
    path = tmp_path / f"{name}.keras"
    path.write_bytes(content)
    return path


def _card(accuracy: float) -> dict:
    return {"metrics": {"accuracy": accuracy}, "params": {}, "data_fingerprint": "d", "code_revision": "c"}


def test_gate_blesses_only_good_enough_and_not_worse(tmp_path):
    registry = Registry(tmp_path / "registry")
    low = registry.register(_model(tmp_path, "a", b"a"), _card(0.55), min_accuracy=0.6)
    assert (low.version, low.production) == ("v0001", False) and "below register.min_accuracy" in low.reason
    first = registry.register(_model(tmp_path, "b", b"b"), _card(0.80), min_accuracy=0.6)
    assert first.production and registry.state()["production"] == "v0002"
    worse = registry.register(_model(tmp_path, "c", b"c"), _card(0.75), min_accuracy=0.6)
    assert not worse.production and "worse than production v0002 (0.8000)" in worse.reason
    assert registry.state()["production"] == "v0002"
    assert registry.card("v0003")["status"] == "candidate"
    better = registry.register(_model(tmp_path, "d", b"d"), _card(0.80), min_accuracy=0.6)
    assert better.production  # equal is not worse
    assert registry.card("production")["version"] == "v0004"
    assert registry.card("v0002")["status"] == "previous production"


def test_rollback_restores_the_previous_production(tmp_path):
    registry = Registry(tmp_path / "registry")
    registry.register(_model(tmp_path, "a", b"a"), _card(0.7), 0.6)
    registry.register(_model(tmp_path, "b", b"b"), _card(0.9), 0.6)
    assert registry.rollback() == ("v0002", "v0001")
    assert registry.state()["production"] == "v0001"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()


def test_manual_promote_and_the_same_model_is_registered_once(tmp_path):
    registry = Registry(tmp_path / "registry")
    model = _model(tmp_path, "a", b"a")
    registry.register(model, _card(0.5), 0.6)
    again = registry.register(model, _card(0.5), 0.6)
    assert again.already_registered and registry.versions() == ["v0001"]
    assert registry.promote("v0001") == "v0001"
    assert registry.state()["production"] == "v0001"
    with pytest.raises(RegistryError, match="no model version 'v0009'"):
        registry.promote("v0009")


def test_a_tampered_model_is_refused(tmp_path):
    registry = Registry(tmp_path / "registry")
    registry.register(_model(tmp_path, "a", b"good"), _card(0.9), 0.6)
    (tmp_path / "registry/versions/v0001/model.keras").write_bytes(b"evil")
    with pytest.raises(RegistryError, match="does not match its registered sha256"):
        registry.model_path("production")


def test_empty_registry_says_what_to_do(tmp_path):
    with pytest.raises(RegistryError, match="no production model yet: run `dvc repro`"):
        Registry(tmp_path / "registry").model_path("production")
