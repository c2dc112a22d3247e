"""The labelling queue and the loop back into training: a real `catdog serve`, real HTTP clients,
headless Chromium for the page, and the real `dvc repro` that picks the labels up."""

from __future__ import annotations

import hashlib
import os
import threading

import httpx
import pandas as pd
import pytest

from catdog.monitoring.labelling import (
    Candidate,
    LabelError,
    LabelSetup,
    candidates,
    rank,
    record_answer,
)
from tests.conftest import make_project, run, set_params, stages_run, write_images
from tests.test_serve import (
    CHROMEDRIVER,
    CHROMIUM,
    SCREENSHOTS,
    files,
    photo,
    register,
    server,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_queue_is_least_sure_first_one_per_content_without_training_or_answered_photos(tmp_path):
    serving, source = tmp_path / "serving", tmp_path / "photos"
    inbox = tmp_path / "inbox"
    pictures = {f"{i}.jpg": photo("dog", i) for i in range(6)}
    for name, data in pictures.items():
        (inbox / "new").mkdir(parents=True, exist_ok=True)
        (inbox / "new" / name).write_bytes(data)
    (inbox / "new" / "copy-of-0.jpg").write_bytes(pictures["0.jpg"])  # the same content twice
    (inbox / "notes.txt").write_text("not a photo")
    os.utime(inbox / "new" / "copy-of-0.jpg", (1, 1))  # the older copy is the one queued
    trained = source / "dog" / "trained.jpg"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(pictures["5.jpg"])  # already in the training data, as the source stage listed it
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": ["dog/trained.jpg"], "bytes": [1], "sha256": [sha(pictures["5.jpg"])]}).to_csv(manifest)
    setup = LabelSetup(serving, source, (manifest,), inbox)
    record_answer(
        setup, next(c for c in candidates(setup) if c.sha256 == sha(pictures["4.jpg"])), "cat", "ann", "v0001", 0.4
    )

    queued = candidates(setup)
    assert sorted(c.sha256 for c in queued) == sorted(sha(pictures[f"{i}.jpg"]) for i in range(4))
    assert next(c for c in queued if c.sha256 == sha(pictures["0.jpg"])).path.name == "copy-of-0.jpg"
    p_dog = dict(zip(sorted(c.sha256 for c in queued), [0.9, 0.45, 0.58, 0.1]))
    margins = [abs(p_dog[c.sha256] - 0.5) for c in rank(queued, p_dog)]
    assert margins == sorted(margins) and margins[0] == pytest.approx(0.05)
    tie = [Candidate("b", tmp_path, 2.0), Candidate("a", tmp_path, 1.0)]
    assert [c.sha256 for c in rank(tie, {"a": 0.6, "b": 0.4})] == ["a", "b"], "ties: the earliest first"
    with pytest.raises(LabelError, match="already labelled 'cat' by ann"):
        record_answer(setup, Candidate(sha(pictures["4.jpg"]), inbox / "new" / "4.jpg", 0), "dog", "bob", "v1", 0.4)
    with pytest.raises(LabelError, match="already in the training data"):
        record_answer(setup, Candidate(sha(pictures["5.jpg"]), inbox / "new" / "5.jpg", 0), "dog", "bob", "v1", 0.4)
    assert sorted(p.name for p in (source / "cat").iterdir()) == [f"{sha(pictures['4.jpg'])}.jpg"]


@pytest.fixture
def loop_project(tmp_path):
    """A project whose source is a folder of photos, its first snapshot ingested, a tiny production
    model registered, and a server that keeps what it is sent."""
    from catdog.model.network import build_model

    photos = write_images(tmp_path / "photos", per_class=12)
    project = make_project(tmp_path / "project")
    set_params(project, {"ingest": {"source": str(photos)}, "serve": {"keep_inputs": True}})
    run(["dvc", "repro", "ingest"], project)
    register(project, build_model(image_size=32))
    return project, photos


def test_six_labelled_photos_are_exactly_what_the_next_dvc_repro_ingests(loop_project):
    project, photos = loop_project
    before = set(pd.read_csv(project / "data/ingested/manifest.csv")["sha256"])
    new = [photo("cat" if i % 2 else "dog", 300 + i) for i in range(8)]
    trained = (photos / "cat" / "1.jpg").read_bytes()
    with server(project) as url:
        for i, data in enumerate([*new, new[0], trained]):  # a repeat, and one already trained on
            assert httpx.post(f"{url}/predict", files=files((f"upload-{i}.jpg", data)), timeout=60).status_code == 200
        first = httpx.get(f"{url}/label/next", timeout=60).json()
        assert first["remaining"] == 8, "8 distinct new photos; the repeat and the trained one are not queued"
        labelled, contested = [], None
        for _ in range(6):
            item = httpx.get(f"{url}/label/next", timeout=60).json()["item"]
            answer = "dog" if item["p_dog"] >= 0.5 else "cat"
            if contested is None:  # two people answer the same photo at the same moment
                contested, replies = item["sha256"], []
                threads = [
                    threading.Thread(
                        target=lambda a, replies=replies, sha=contested: replies.append(
                            httpx.post(f"{url}/label/{sha}", json={"label": a}, timeout=60)
                        ),
                        args=(a,),
                    )
                    for a in ("cat", "dog")
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                assert sorted(r.status_code for r in replies) == [200, 409], [r.text for r in replies]
                assert "already labelled" in next(r for r in replies if r.status_code == 409).json()["detail"]
                answer = next(r for r in replies if r.status_code == 200).json()["label"]
            else:
                assert (
                    httpx.post(f"{url}/label/{item['sha256']}", json={"label": answer}, timeout=60).status_code == 200
                )
            labelled.append((item["sha256"], answer))
        again = httpx.post(f"{url}/label/{labelled[1][0]}", json={"label": "cat"}, timeout=60)
        assert again.status_code == 409 and "already labelled" in again.json()["detail"]
        present = httpx.post(f"{url}/label/{sha(trained)}", json={"label": "cat"}, timeout=60)
        assert present.status_code == 409 and "already in the training data" in present.json()["detail"]
        assert httpx.get(f"{url}/label/next", timeout=60).json()["remaining"] == 2

    for digest, answer in labelled:
        assert (photos / answer / f"{digest}.jpg").is_file()
    assert len(list(photos.rglob("*.jpg"))) == 24 + 6, "each label wrote one photo, none twice"
    output = run(["dvc", "repro", "ingest"], project).stdout
    assert stages_run(output) == ["source", "ingest"]
    manifest = pd.read_csv(project / "data/ingested/manifest.csv")
    added = manifest[~manifest["sha256"].isin(before)]
    assert sorted(zip(added["sha256"], added["label"])) == sorted(labelled)
    exported = project / "labels.csv"
    run(["catdog", "label", "--export", str(exported)], project)
    assert sorted(pd.read_csv(exported)["sha256"]) == sorted(d for d, _ in labelled)
    assert set(pd.read_csv(exported)["who"]) == {"local"}


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver: run `make browser` (as root)"
)
def test_labelling_in_a_real_browser_with_the_d_key(loop_project, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    project, photos = loop_project
    uploads = [photo("dog", 500 + i) for i in range(3)]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=820,900",
    ):
        options.add_argument(flag)
    with server(project, extra_env={"CATDOG_SERVE_TOKEN": "ann=s3cret"}) as url:
        auth = {"Authorization": "Bearer s3cret"}
        for i, data in enumerate(uploads):
            httpx.post(f"{url}/predict", files=files((f"u{i}.jpg", data)), headers=auth, timeout=60)
        assert httpx.get(f"{url}/label", timeout=10).status_code == 401
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            browser.get(f"{url}/label?token=s3cret")
            wait = WebDriverWait(browser, 60)
            wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "3 photos in the queue"))
            shown = browser.find_element(By.ID, "photo").get_attribute("data-sha256")
            assert "guesses" in browser.find_element(By.ID, "guess").text
            wait.until(lambda b: b.execute_script("return document.getElementById('why').naturalWidth") == 32)
            SCREENSHOTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(SCREENSHOTS / "label_page.png"))
            browser.find_element(By.TAG_NAME, "body").send_keys("d")
            wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "2 photos in the queue"))
            assert browser.find_element(By.ID, "photo").get_attribute("data-sha256") != shown
            assert "labelled dog" in browser.find_element(By.ID, "message").text
        finally:
            browser.quit()
    assert shown in {sha(d) for d in uploads}
    assert (photos / "dog" / f"{shown}.jpg").read_bytes() in uploads
    assert '"who": "ann"' in (project / "data/serving/labels" / f"{shown}.json").read_text()
    print(f"screenshot: {SCREENSHOTS / 'label_page.png'}")


def test_with_the_embedded_set_labels_go_beside_it_and_the_cap_never_drops_them(tmp_path):
    from catdog.core.config import load_params

    project = make_project(tmp_path / "project")  # the embedded silhouettes, capped at 20 per class
    run(["dvc", "repro", "ingest"], project)
    before = pd.read_csv(project / "data/ingested/manifest.csv")
    destination = load_params(project / "params.yaml").labelled_path(project)
    assert destination == project / "data" / "labelled"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"{i}.jpg").write_bytes(photo("dog", 700 + i))
    setup = LabelSetup(project / "data" / "serving", destination, (project / "data/ingested/manifest.csv",), inbox)
    for candidate in candidates(setup):
        record_answer(setup, candidate, "dog", "ann", "v0001", 0.5)

    assert stages_run(run(["dvc", "repro", "ingest"], project).stdout) == ["source", "ingest"]
    after = pd.read_csv(project / "data/ingested/manifest.csv")
    added = after[~after["sha256"].isin(before["sha256"])]
    assert sorted(added["sha256"]) == sorted(sha(photo("dog", 700 + i)) for i in range(3))
    assert set(added["label"]) == {"dog"} and all(added["source"].str.startswith("labelled/dog/"))
    assert after["label"].value_counts().to_dict() == {"cat": 20, "dog": 23}
    assert stages_run(run(["dvc", "repro", "ingest"], project).stdout) == ["source"], "nothing new: skipped"
