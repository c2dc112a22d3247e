import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catdog.data.images import ImageError, load_model_input, to_grayscale, to_square
from tests.conftest import MAX_PIXELS, image_bytes


def _png(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save)
    return buffer.getvalue()


def test_any_image_becomes_size_by_size_uint8():
    for fmt, mode in [("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("BMP", "RGB")]:
        array = load_model_input(image_bytes("dog", (75, 31), fmt, mode), 32, max_pixels=MAX_PIXELS)
        assert array.shape == (32, 32) and array.dtype == np.uint8


def test_alpha_is_composited_on_white():
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(to_grayscale(transparent)).min() == 255


def test_sixteen_bit_is_scaled_not_clipped():
    values = np.full((8, 8), 32768, np.uint16)
    image = Image.open(io.BytesIO(_png(Image.fromarray(values))))
    assert image.mode.startswith("I")
    assert abs(int(np.asarray(to_grayscale(image)).mean()) - 128) <= 1


def test_resize_policies():
    wide = Image.fromarray(np.full((10, 40), 200, np.uint8), "L")
    assert np.asarray(to_square(wide, 20, "stretch")).min() == 200
    padded = np.asarray(to_square(wide, 20, "pad"))
    assert padded[0, 10] == 128 and padded[10, 10] == 200  # mid-gray bars above and below
    assert np.asarray(to_square(wide, 20, "crop")).min() == 200


def test_bombs_are_refused_from_the_header():
    huge = Image.new("L", (5000, 5000))
    with pytest.raises(ImageError, match="too large: 5000x5000"):
        load_model_input(_png(huge, optimize=False), 32, max_pixels=1_000_000)


def test_predict_sees_images_exactly_as_preprocessing(tmp_path):
    """PNG, JPEG, RGB, RGBA, grayscale and odd sizes: same p(dog) through both paths."""
    from catdog.core.config import PreprocessParams
    from catdog.data.shards import ShardReader
    from catdog.model.network import build_model
    from catdog.serving.predict import predict_files
    from catdog.stages.preprocess import run

    ingested = tmp_path / "ingested"
    cases = [
        ("PNG", "RGB", (64, 48)),
        ("JPEG", "RGB", (33, 97)),
        ("PNG", "RGBA", (50, 50)),
        ("PNG", "L", (17, 300)),
        ("JPEG", "L", (640, 480)),
    ]
    rows = []
    for i, (fmt, mode, size) in enumerate(cases):
        path = ingested / f"images/{i}.{fmt.lower()}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes("dog" if i % 2 else "cat", size, fmt, mode, seed=i))
        rows.append({"path": f"images/{i}.{fmt.lower()}", "label": "cat", "sha256": ("0" if i == 0 else "f") * 64})
    (tmp_path / "validated").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "validated/accepted.csv", index=False)
    run(
        PreprocessParams(image_size=32, workers=1, test_fraction=0.01, val_fraction=0.0),
        tmp_path / "validated",
        ingested,
        tmp_path / "pre",
        progress=False,
        max_pixels=MAX_PIXELS,
    )
    model = build_model(image_size=32)
    by_path = {}
    for split in ("train", "test"):
        reader = ShardReader(tmp_path / "pre" / split)
        from_shards = model.predict(reader.images(np.arange(len(reader))), verbose=0).reshape(-1)
        by_path.update(zip(reader.index["path"], from_shards))
    assert len(by_path) == len(cases)
    predicted = predict_files(model, [ingested / r["path"] for r in rows], 32, max_pixels=MAX_PIXELS)
    for row, prediction in zip(rows, predicted):
        assert prediction.error is None
        assert prediction.p_dog == pytest.approx(by_path[row["path"]], abs=1e-6)


def test_predict_reports_unreadable_files_and_predicts_the_rest(tmp_path):
    from catdog.model.network import build_model
    from catdog.serving.predict import predict_files

    good = tmp_path / "good.png"
    good.write_bytes(image_bytes())
    bad = tmp_path / "bad.jpg"
    bad.write_text("<html>not an image</html>")
    results = predict_files(
        build_model(image_size=32), [bad, good, tmp_path / "missing.jpg"], 32, max_pixels=MAX_PIXELS
    )
    assert [r.error is None for r in results] == [False, True, False]
    assert "not an image" in results[0].error and "not found" in results[2].error
    assert results[1].label in ("cat", "dog")


def test_a_shard_written_image_by_image_is_what_np_save_writes_and_appears_only_whole(tmp_path):
    from catdog.data.reuse import ArrayCache
    from catdog.data.shards import ShardWriter

    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    cache = ArrayCache(tmp_path / "cache", "key", 16)
    for i in (1, 3):
        cache.put(f"{i:064x}", images[i])
    with ShardWriter(tmp_path / "shard.npy", 5, 16) as shard:
        for i, image in enumerate(images):
            if not cache.copy_to(f"{i:064x}", shard.file):
                shard.write(image)
    np.save(tmp_path / "expected.npy", images)
    assert (tmp_path / "shard.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()

    with pytest.raises(RuntimeError, match="before all its images"):
        with ShardWriter(tmp_path / "short.npy", 5, 16) as shard:
            shard.write(images[0])
    assert not list(tmp_path.glob("short.npy*"))


def test_catdog_predict_refuses_an_image_over_the_projects_validate_max_pixels(tmp_path):
    # predict used a hard-coded 40,000,000 while serve honoured params.yaml; now both take the project's.
    import json
    import shutil

    from catdog.devtools.workspace import REPO, set_params
    from catdog.model.network import build_model
    from tests.conftest import run

    build_model(image_size=32).save(tmp_path / "model.keras")
    (tmp_path / "dog.jpg").write_bytes(image_bytes("dog", (60, 50), "JPEG"))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    command = ["catdog", "predict", "--json", "--model", str(tmp_path / "model.keras"), str(tmp_path / "dog.jpg")]
    assert json.loads(run(command, tmp_path).stdout)[0]["error"] is None
    set_params(tmp_path, {"validate": {"max_pixels": 2_000}})
    refused = run(command, tmp_path, check=False)
    assert refused.returncode == 2 and "over 2,000 pixels" in json.loads(refused.stdout)[0]["error"]
