"""train.precision: bfloat16 where the hardware has it, float32 elsewhere; the spec model either way."""

import numpy as np
import pytest

from catdog.model.precision import resolve

ZEN4 = "processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
ZEN2 = "processor : 0\nflags : fpu sse avx2 fma\n"


def test_auto_picks_bfloat16_only_where_it_is_native():
    assert resolve("auto", cpuinfo=ZEN4) == ("mixed_bfloat16", "auto: this CPU has avx512_bf16")
    precision, why = resolve("auto", cpuinfo=ZEN2)
    assert precision == "float32" and "no avx512_bf16 or amx_bf16" in why and "emulated" in why
    assert resolve("auto", cpuinfo=ZEN2, gpu="NVIDIA A100")[0] == "mixed_bfloat16"
    assert resolve("mixed_bfloat16", cpuinfo=ZEN2) == ("mixed_bfloat16", "mixed_bfloat16 as asked")
    assert resolve("float32", cpuinfo=ZEN4)[0] == "float32"


def test_the_bfloat16_model_is_the_spec_model_with_float32_variables_and_output():
    import keras

    from catdog.model.network import build_model, precision_of

    model = build_model(256, precision="mixed_bfloat16")
    assert model.count_params() == 33_932_545
    assert keras.config.dtype_policy().name == "float32", "building must not change the global policy"
    assert precision_of(model) == "mixed_bfloat16"
    assert {layer.compute_dtype for layer in model.layers if isinstance(layer, keras.layers.Conv2D)} == {"bfloat16"}
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    assert model.get_layer("p_dog").compute_dtype == "float32"
    output = model.predict_on_batch(np.zeros((1, 256, 256, 1), np.uint8))
    assert np.asarray(output).dtype == np.float32


def test_a_model_predicts_in_another_precision_with_the_same_weights(tmp_path):
    from catdog.model.network import (
        build_model,
        load_model,
        precision_of,
        with_precision,
    )

    model = build_model(32, precision="float32")
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    assert precision_of(loaded) == "float32"
    bf16 = with_precision(loaded, "mixed_bfloat16")
    assert precision_of(bf16) == "mixed_bfloat16" and precision_of(loaded) == "float32"
    images = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 1), dtype=np.uint8)
    full, half = np.asarray(loaded.predict_on_batch(images)), np.asarray(bf16.predict_on_batch(images))
    assert half.dtype == np.float32
    assert np.abs(full - half).max() < 0.02, "bfloat16 keeps about three significant digits"


@pytest.mark.slow
def test_predict_precision_flag(tmp_path):
    from catdog.model.network import build_model
    from tests.conftest import image_bytes, run

    build_model(32, precision="mixed_bfloat16").save(tmp_path / "bf16.keras")
    (tmp_path / "dog.jpg").write_bytes(image_bytes("dog", (40, 40), "JPEG"))
    answers = {}
    for precision in ("trained", "float32"):
        out = run(
            [
                "catdog",
                "predict",
                "--json",
                "--model",
                str(tmp_path / "bf16.keras"),
                "--precision",
                precision,
                str(tmp_path / "dog.jpg"),
            ],
            tmp_path,
        ).stdout
        import json

        answers[precision] = json.loads(out)[0]["p_dog"]
    assert answers["trained"] == pytest.approx(answers["float32"], abs=0.02)
