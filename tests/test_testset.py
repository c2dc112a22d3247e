"""evaluate.test_source: a fixed, curated test set, validated, never trained on, the gate's ground."""

import json

import pandas as pd

from catdog.registry.store import Registry
from tests.conftest import image_bytes, make_project, run, set_params, write_images


def test_a_curated_test_set_is_validated_kept_out_of_training_and_the_gate_judges_on_it(tmp_path):
    photos = write_images(tmp_path / "photos", per_class=12)
    curated = tmp_path / "curated"
    for label in ("cat", "dog"):
        (curated / label).mkdir(parents=True)
        for i in range(8):
            seed = 700 + i + (50 if label == "dog" else 0)
            (curated / label / f"{i}.jpg").write_bytes(image_bytes(label, (44 + i, 40), "JPEG", seed=seed))
        (curated / label / "also-in-training.jpg").write_bytes((photos / label / "0.jpg").read_bytes())
    (curated / "cat" / "broken.jpg").write_bytes(b"not a photo")
    project = make_project(tmp_path / "project")
    set_params(
        project, {"ingest": {"source": str(photos), "max_per_class": None}, "evaluate": {"test_source": str(curated)}}
    )

    out = run(["dvc", "repro"], project).stdout
    assert "testset: 18 images (9 cat, 9 dog) from" in out and "1 rejected" in out
    assert "preprocess: 2 accepted images are also in the curated test set (evaluate.test_source)" in out
    curated_hashes = set(pd.read_csv(project / "data/testset/test/index.csv")["sha256"])
    for split in ("train", "val", "test"):
        trained_on = set(pd.read_csv(project / f"data/preprocessed/{split}/index.csv")["sha256"])
        assert not trained_on & curated_hashes, split
    metrics = json.loads((project / "data/metrics/evaluate/metrics.json").read_text())
    assert metrics["test_source"]["test_images"] == 18
    decision = json.loads((project / "data/metrics/register.json").read_text())
    assert decision["judged_on"] == "the curated test set (18 images)"
    assert decision["reason"].startswith("on the curated test set (18 images): ")

    set_params(project, {"train": {"seed": 7}})
    run(["dvc", "repro"], project)
    decision = json.loads((project / "data/metrics/register.json").read_text())
    assert decision["comparison"]["images"] == 18 and decision["comparison"]["production_version"] == "v0001"
    assert Registry(project / "data/registry").card("v0002")["judged_on"] == "the curated test set (18 images)"

    (curated / "dog" / "late.jpg").write_bytes(image_bytes("dog", (50, 40), "JPEG", seed=790))
    status = run(["catdog", "status"], project).stdout
    assert "1 added, 0 removed, 0 changed since the last run: the next run scores and gates" in status, status
    assert "added: dog/late.jpg" in status
    assert "testset: 19 images" in run(["dvc", "repro", "testset"], project).stdout  # DVC sees the set change
