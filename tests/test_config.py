import dataclasses

import pytest
import yaml

from catdog.core.config import (
    SECTIONS,
    ParamsError,
    apply_overrides,
    load_params,
    parse_params,
)
from tests.conftest import REPO


def test_defaults_in_params_yaml_are_the_spec():
    params = load_params(REPO / "params.yaml")
    assert params.preprocess.image_size == 256
    assert params.train.batch_size == 32
    assert params.train.learning_rate == 0.001
    assert params.train.dropout == 0.5
    assert params.ingest.source == "animal-mnist"


def test_params_yaml_lists_every_knob_so_dvc_tracks_it():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, cls in SECTIONS.items():
        assert set(raw[section]) == {f.name for f in dataclasses.fields(cls)}, section


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"train": {"epochz": 3}}, "train.epochz"),
        ({"trian": {"epochs": 3}}, "trian"),
        ({"train": {"epochs": "3"}}, "train.epochs"),
        ({"train": {"epochs": -1}}, "train.epochs"),
        ({"train": {"epochs": True}}, "train.epochs"),
        ({"train": {"learning_rate": 0}}, "train.learning_rate"),
        ({"preprocess": {"image_size": 0}}, "preprocess.image_size"),
        ({"preprocess": {"resize": "squash"}}, "preprocess.resize"),
        ({"ingest": {"max_per_class": 0}}, "ingest.max_per_class"),
        ({"register": {"min_accuracy": 1.5}}, "register.min_accuracy"),
        ({"train": {"warmup_sizes": 64, "warmup_epochs": [1]}}, "train.warmup_sizes"),
        ({"train": {"warmup_sizes": [64, "x"], "warmup_epochs": [1, 1]}}, "train.warmup_sizes[1]"),
        ({"train": {"warmup_sizes": [64], "warmup_epochs": [0]}}, "train.warmup_epochs[0]"),
        ({"train": {"warmup_sizes": [64, 128], "warmup_epochs": [5]}}, "train.warmup_epochs"),
        ({"train": {"warmup_sizes": [100], "warmup_epochs": [5]}}, "train.warmup_sizes"),  # does not divide 256
        ({"train": {"warmup_sizes": [256], "warmup_epochs": [5]}}, "train.warmup_sizes"),  # not smaller
        ({"train": {"warmup_sizes": [128, 64], "warmup_epochs": [5, 5]}}, "train.warmup_sizes"),  # shrinks
        (
            {"train": {"warmup_sizes": [48, 128], "warmup_epochs": [5, 5]}},
            "train.warmup_sizes",
        ),  # 48 does not divide 128
        ({"train": {"warmup_sizes": [4], "warmup_epochs": [5]}}, "train.warmup_sizes[0]"),  # below 8
    ],
)
def test_bad_params_fail_naming_the_key(raw, key):
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert str(error.value).startswith(key)


def test_bad_params_message_says_the_fix():
    with pytest.raises(ParamsError, match=r"fix: use a value between 1 and 10000"):
        parse_params({"train": {"epochs": -1}})
    with pytest.raises(ParamsError, match=r"fix: remove it, or use one of .*epochs"):
        parse_params({"train": {"epochz": 1}})


def test_missing_source_path_fails_before_work(tmp_path):
    (tmp_path / "params.yaml").write_text("ingest:\n  source: no/such/photos.zip\n")
    with pytest.raises(ParamsError, match=r"ingest.source: no such file or folder .*photos.zip"):
        load_params(tmp_path / "params.yaml")


def test_ints_are_accepted_for_floats_and_null_for_optional():
    params = parse_params({"train": {"learning_rate": 1}, "ingest": {"max_per_class": None}})
    assert params.train.learning_rate == 1.0 and isinstance(params.train.learning_rate, float)
    assert params.ingest.max_per_class is None


def test_overrides_apply_dotted_keys_and_reject_unknown_ones():
    raw = {"train": {"epochs": 1}}
    assert apply_overrides(raw, {"train.epochs": 3})["train"]["epochs"] == 3
    assert raw["train"]["epochs"] == 1  # the input is not changed
    with pytest.raises(ParamsError, match="^train.epoch: unknown key"):
        apply_overrides(raw, {"train.epoch": 3})
    with pytest.raises(ParamsError, match="^epochs: unknown key"):
        apply_overrides(raw, {"epochs": 3})


def test_warm_up_lists_become_tuples_of_ints():
    params = parse_params({"train": {"warmup_sizes": [64, 128], "warmup_epochs": [25, 15]}})
    assert params.train.warmup_sizes == (64, 128) and params.train.warmup_epochs == (25, 15)


def test_training_across_machines_is_not_offered():
    with pytest.raises(ParamsError, match="train.distribute: 'multi_worker' is not one of 'default', 'mirrored'"):
        parse_params({"train": {"distribute": "multi_worker"}})
