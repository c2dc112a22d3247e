import gzip
import io
import pickle
import tarfile
import zipfile

import pandas as pd
import pytest

from catdog.core.config import IngestParams
from catdog.data.intake import cap_per_class
from catdog.data.intake import ingest as run
from catdog.data.sources import (
    IngestError,
    label_from_path,
    load_numpy_pickle,
    safe_member_name,
)
from tests.conftest import SHARED_ZIP, image_bytes, write_images


@pytest.mark.parametrize(
    "name, label",
    [
        ("cat.1.jpg", "cat"),
        ("train/dog.1000.jpg", "dog"),
        ("Cats/0001.jpg", "cat"),
        ("PetImages/Dog/12.jpg", "dog"),
        ("dogs/a/b.png", "dog"),
        ("Cat_03.jpg", "cat"),
        ("cats/dog.1.jpg", "dog"),  # the file name is nearer than the folder
        ("animals/cow.1.jpg", None),
        ("catalog/1.jpg", None),
        ("dogma.jpg", None),
    ],
)
def test_labels_come_from_file_names_or_class_folders(name, label):
    assert label_from_path(name) == label


def test_unsafe_member_names_are_recognised():
    assert safe_member_name("train/cat.1.jpg") == "train/cat.1.jpg"
    assert safe_member_name("./train//cat.1.jpg") == "train/cat.1.jpg"
    for bad in ["../evil.jpg", "/etc/passwd", "a/../../b.jpg", "C:/x.jpg", "..\\x.jpg"]:
        assert safe_member_name(bad) is None


def test_embedded_animal_mnist(tmp_path):
    result = run(IngestParams(max_per_class=5), tmp_path / "out", None, progress=False)
    assert result.manifest["label"].value_counts().to_dict() == {"cat": 5, "dog": 5}
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out/images").rglob("*.png"))
    assert files == sorted(result.manifest["path"])
    saved = pd.read_csv(tmp_path / "out/manifest.csv")
    assert list(saved.columns) == ["path", "label", "sha256", "bytes", "source"]


def test_embedded_loader_refuses_pickles_that_would_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        load_numpy_pickle(path)


def test_folder_with_class_subfolders(tmp_path):
    source = write_images(tmp_path / "photos", per_class=3, layout="folders")
    result = run(IngestParams(), tmp_path / "out", source, progress=False)
    assert sorted(result.manifest["path"]) == [f"images/{c}/{i}.jpg" for c in ("cat", "dog") for i in range(3)]
    assert (tmp_path / "out/images/cat/0.jpg").read_bytes() == (source / "cat/0.jpg").read_bytes()


def test_zip_in_kaggle_layout(tmp_path):
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for label in ("cat", "dog"):
            for i in range(4):
                zf.writestr(f"train/{label}.{i}.jpg", image_bytes(label, fmt="JPEG", seed=i))
        zf.writestr("train/README.txt", b"hello")
    result = run(IngestParams(), tmp_path / "out", archive, progress=False)
    assert result.manifest["label"].value_counts().to_dict() == {"cat": 4, "dog": 4}
    assert result.skipped.to_dict("records") == [
        {"source": "train/README.txt", "reason": "no label: neither the file name nor a folder says cat or dog"}
    ]


def test_tar_gz_in_petimages_layout(tmp_path):
    archive = tmp_path / "PetImages.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for label in ("Cat", "Dog"):
            for i in range(3):
                data = image_bytes(label.lower(), fmt="JPEG", seed=i)
                info = tarfile.TarInfo(f"PetImages/{label}/{i}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    result = run(IngestParams(), tmp_path / "out", archive, progress=False)
    assert result.manifest["label"].value_counts().to_dict() == {"cat": 3, "dog": 3}
    assert (tmp_path / "out/images/PetImages/Dog/2.jpg").exists()


def test_cap_per_class_is_deterministic_and_order_free():
    rows = [
        {"path": f"p{i}", "label": "cat" if i % 2 else "dog", "sha256": f"{i:064x}", "bytes": 1, "source": ""}
        for i in range(40)
    ]
    frame = pd.DataFrame(rows)
    kept, dropped = cap_per_class(frame, 5)
    kept_shuffled, _ = cap_per_class(frame.sample(frac=1, random_state=1), 5)
    assert kept["path"].tolist() == kept_shuffled["path"].tolist()
    assert kept["label"].value_counts().to_dict() == {"cat": 5, "dog": 5}
    assert len(dropped) == 30


def test_not_an_archive_is_a_clear_error(tmp_path):
    bogus = tmp_path / "photos.zip"
    bogus.write_bytes(b"this is not a zip file")
    with pytest.raises(IngestError, match="neither a folder nor a readable .zip/.tar"):
        run(IngestParams(), tmp_path / "out", bogus, progress=False)


def test_source_without_labels_fails_and_keeps_the_previous_output(tmp_path):
    good = write_images(tmp_path / "good", per_class=2)
    run(IngestParams(), tmp_path / "out", good, progress=False)
    (tmp_path / "unlabelled").mkdir()
    (tmp_path / "unlabelled" / "x.jpg").write_bytes(image_bytes())
    with pytest.raises(IngestError, match="no labelled images found"):
        run(IngestParams(), tmp_path / "out", tmp_path / "unlabelled", progress=False)
    assert len(pd.read_csv(tmp_path / "out/manifest.csv")) == 4


@pytest.mark.shared
@pytest.mark.skipif(not SHARED_ZIP.exists(), reason="../shared/data/dogs-vs-cats-2000.zip is not here")
def test_shared_kaggle_zip_ingests_and_validates(tmp_path):
    from catdog.core.config import ValidateParams
    from catdog.data import validation

    result = run(IngestParams(), tmp_path / "ingested", SHARED_ZIP, progress=False)
    assert result.manifest["label"].value_counts().to_dict() == {"cat": 1000, "dog": 1000}
    checked = validation.validate(
        ValidateParams(min_side=32),
        tmp_path / "ingested",
        tmp_path / "validated",
        tmp_path / "validate.json",
        progress=False,
    )
    assert checked.counts["accepted"] + checked.counts["rejected"] == 2000
    assert checked.counts["accepted"] >= 1990
    assert (tmp_path / "validated/data_docs/index.html").exists()
