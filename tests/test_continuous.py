"""Continuous training: a growing source folder is seen by the real `dvc repro`, and only then."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml

from catdog.core.config import IngestParams
from catdog.core.files import sha256_file
from catdog.data import intake, sources
from catdog.data.drift import PROFILE_COLUMNS
from catdog.registry.store import Registry
from catdog.stages import source
from tests.conftest import (
    BIN,
    env,
    image_bytes,
    inverted,
    make_project,
    run,
    set_params,
    stages_run,
    write_images,
)


@pytest.fixture
def folder_project(tmp_path):
    photos = write_images(tmp_path / "photos", per_class=12)
    project = make_project(tmp_path / "project")
    set_params(project, {"ingest": {"source": str(photos)}})
    return project, photos


def ingested_names(project) -> set[str]:
    return set(pd.read_csv(project / "data/ingested/manifest.csv")["source"])


def test_added_removed_and_changed_photos_rerun_ingest_and_an_untouched_source_skips_it(folder_project):
    project, photos = folder_project
    assert stages_run(run(["dvc", "repro", "ingest"], project).stdout) == ["source", "ingest"]
    assert len(ingested_names(project)) == 24

    untouched = run(["dvc", "repro", "ingest"], project).stdout
    assert stages_run(untouched) == ["source"] and "Stage 'ingest' didn't change" in untouched
    status = run(["catdog", "status"], project).stdout
    assert "unchanged since the last run" in status

    (photos / "dog/new.jpg").write_bytes(image_bytes("dog", (50, 44), "JPEG", seed=77))
    status = run(["catdog", "status"], project).stdout
    assert "1 added, 0 removed, 0 changed since the last run: the next run ingests them" in status
    assert "added: dog/new.jpg" in status
    assert stages_run(run(["dvc", "repro", "ingest"], project).stdout) == ["source", "ingest"]
    assert "dog/new.jpg" in ingested_names(project)

    (photos / "cat/0.jpg").unlink()
    (photos / "cat/1.jpg").write_bytes(image_bytes("cat", (60, 30), "JPEG", seed=78))
    assert stages_run(run(["dvc", "repro", "ingest"], project).stdout) == ["source", "ingest"]
    names = ingested_names(project)
    assert "cat/0.jpg" not in names and "cat/1.jpg" in names
    changes = json.loads((project / "data/cache/source-changes.json").read_text())
    assert (changes["added"], changes["removed"], changes["changed"]) == (0, 1, 1)
    assert "unchanged since the last run" in run(["catdog", "status"], project).stdout


def test_fewer_changes_than_min_changed_files_wait_for_more(folder_project):
    project, photos = folder_project
    set_params(project, {"ingest": {"min_changed_files": 3}})
    run(["dvc", "repro", "ingest"], project)
    (photos / "dog/a.jpg").write_bytes(image_bytes("dog", (50, 44), "JPEG", seed=81))
    waiting = run(["dvc", "repro", "ingest"], project).stdout
    assert stages_run(waiting) == ["source"] and "fewer than ingest.min_changed_files (3)" in waiting
    assert "the next run waits for more" in run(["catdog", "status"], project).stdout
    for seed in (82, 83):
        (photos / f"cat/new-{seed}.jpg").write_bytes(image_bytes("cat", (50, 44), "JPEG", seed=seed))
    assert stages_run(run(["dvc", "repro", "ingest"], project).stdout) == ["source", "ingest"]
    assert {"dog/a.jpg", "cat/new-82.jpg", "cat/new-83.jpg"} <= ingested_names(project)


def test_ingest_takes_the_listed_snapshot_and_the_next_run_sees_later_photos(tmp_path):
    photos = write_images(tmp_path / "photos", per_class=6)
    params = IngestParams()
    manifest = tmp_path / "source/manifest.csv"
    source.run(params, photos, manifest, tmp_path / "cache")
    (photos / "dog/late.jpg").write_bytes(image_bytes("dog", (50, 44), "JPEG", seed=90))  # lands during ingest
    (photos / "cat/2.jpg").write_bytes(image_bytes("cat", (70, 44), "JPEG", seed=91))  # rewritten during ingest

    result = intake.ingest(
        params, tmp_path / "ingested", photos, progress=False, snapshot=sources.read_manifest(manifest)
    )
    assert "dog/late.jpg" not in set(result.manifest["source"])
    skipped = dict(zip(result.skipped["source"], result.skipped["reason"]))
    assert skipped == {"cat/2.jpg": "changed after the source was listed (the next run takes it)"}

    second = source.run(params, photos, manifest, tmp_path / "cache")
    assert (second.changes.added, second.changes.changed) == (["dog/late.jpg"], ["cat/2.jpg"])
    assert second.hashed == 2, "only the new and the rewritten file are hashed again"
    result = intake.ingest(
        params, tmp_path / "ingested", photos, progress=False, snapshot=sources.read_manifest(manifest)
    )
    assert {"dog/late.jpg", "cat/2.jpg"} <= set(result.manifest["source"]) and result.skipped.empty


def _tree(folder) -> dict:
    """Every file below `folder` by relative path -> bytes (Data Docs carry run times: left out)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "data_docs" not in path.parts
    }


def test_new_photos_are_the_only_new_work_and_the_outputs_equal_a_run_from_scratch(folder_project, tmp_path):
    project, photos = folder_project
    run(["dvc", "repro", "preprocess"], project)
    (photos / "cat/0.jpg").unlink()
    (photos / "cat/1.jpg").write_bytes(image_bytes("cat", (60, 30), "JPEG", seed=78))
    for seed in (79, 80):
        (photos / f"dog/new-{seed}.jpg").write_bytes(image_bytes("dog", (52, 40), "JPEG", seed=seed))

    out = run(["dvc", "repro", "preprocess"], project).stdout
    assert stages_run(out) == ["source", "ingest", "validate", "preprocess"]  # testset: none, unchanged
    assert "3 computed, 22 reused by content hash" in out  # 2 added, 1 changed, 1 removed of 24
    for stage in ("validate", "preprocess"):
        reuse = json.loads((project / f"data/cache/{stage}-reuse.json").read_text())
        assert reuse == {"reused": 22, "computed": 3}, stage

    scratch = make_project(tmp_path / "scratch")
    set_params(scratch, {"ingest": {"source": str(photos)}})
    run(["dvc", "repro", "preprocess"], scratch)
    for output in ("data/source", "data/ingested", "data/validated", "data/preprocessed", "data/metrics"):
        assert _tree(project / output) == _tree(scratch / output), output

    kept = set(pd.read_csv(project / "data/ingested/manifest.csv")["sha256"])
    for store in ("ingested-files", "preprocess-arrays"):
        stored = {path.name for path in (project / "data/cache" / store).rglob("*") if path.is_file()}
        assert stored == kept, f"{store} keeps exactly this run's photos"

    # DVC links its outputs to its cache (.dvc/config): copying every photo back took 30 s of 76 at 20,000 photos
    photo = next((project / "data/ingested/images").rglob("*.jpg"))
    md5 = hashlib.md5(photo.read_bytes()).hexdigest()
    assert photo.stat().st_ino == (project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).stat().st_ino


def test_validate_facts_of_new_photos_are_appended_and_removed_ones_drop_out(tmp_path):
    from catdog.data.reuse import FactsCache

    def facts(*names):
        return {name: {"width": len(name)} for name in names}

    FactsCache(tmp_path, "k").save(facts("a", "b"))
    file = tmp_path / "k.jsonl"
    inode = file.stat().st_ino
    cache = FactsCache(tmp_path, "k")
    cache.save(facts("a", "b", "c"))
    assert file.stat().st_ino == inode and len(file.read_text().splitlines()) == 3, "new facts are appended"
    assert FactsCache(tmp_path, "k").facts == facts("a", "b", "c")

    FactsCache(tmp_path, "k").save(facts("a", "c"))
    assert FactsCache(tmp_path, "k").facts == facts("a", "c"), "a removed photo drops out"

    file.write_text(file.read_text() + '{"sha256": "d", "heig')  # a run killed while appending
    damaged = FactsCache(tmp_path, "k")
    assert damaged.facts == facts("a", "c")
    damaged.save(facts("a", "c", "e"))
    assert FactsCache(tmp_path, "k").facts == facts("a", "c", "e") and "heig" not in file.read_text()


def test_the_same_photo_added_again_under_the_other_label_rejects_both_by_name(folder_project):
    project, photos = folder_project
    run(["dvc", "repro", "validate"], project)
    (photos / "dog/3-again.jpg").write_bytes((photos / "cat/3.jpg").read_bytes())
    run(["dvc", "repro", "validate"], project)
    rejected = pd.read_csv(project / "data/validated/rejected.csv")
    reasons = dict(zip(rejected["path"], rejected["reason"]))
    conflict = "same image content is labelled both cat and dog"
    assert reasons == {"images/cat/3.jpg": conflict, "images/dog/3-again.jpg": conflict}
    accepted = set(pd.read_csv(project / "data/validated/accepted.csv")["path"])
    assert len(accepted) == 23 and "images/cat/4.jpg" in accepted  # the other photos all stay


def _kill_when(project, line: str) -> None:
    """Start `dvc repro`, and kill it and its stage processes once its output shows `line`."""
    process = subprocess.Popen(
        [str(BIN / "dvc"), "repro"],
        cwd=project,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for output in process.stdout:
        if line in output:
            time.sleep(1.0)
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_damaged_dvc_lock_is_named_and_repaired(folder_project):
    project, _ = folder_project
    run(["dvc", "repro", "ingest"], project)
    run(["dvc", "repro", "ingest"], project)  # the source stage kept the sound lock of this run's start
    lock = project / "dvc.lock"
    sound = lock.read_bytes()
    lock.write_bytes(sound[: sound.index(b"md5:", len(sound) // 2) + 2])  # as a killed rewrite leaves it
    assert "'./dvc.lock' is invalid" in run(["dvc", "repro", "ingest"], project, check=False).stderr
    assert "dvc.lock is damaged" in run(["catdog", "status"], project).stdout
    assert "put back the copy from the start of the last run" in run(["catdog", "repair-lock"], project).stdout
    assert lock.read_bytes() == sound
    assert run(["catdog", "repair-lock"], project).stdout.strip() == "dvc.lock is sound: nothing to repair"
    assert stages_run(run(["dvc", "repro", "ingest"], project).stdout) == ["source"]


def test_nights_of_a_growing_folder_a_killed_run_drift_and_a_vanished_source(folder_project):
    """One project through several nights (each full `dvc repro` costs a training run)."""
    project, photos = folder_project
    set_params(project, {"ingest": {"max_per_class": None}})
    run(["dvc", "repro"], project)
    profile = pd.read_csv(project / "data/registry/versions/v0001/data-profile.csv")
    assert list(profile.columns) == PROFILE_COLUMNS and len(profile) == 24
    # The stages after ingest follow its manifest, so DVC hashes one file for each, not the image
    # tree; a hand edit inside the snapshot is still seen, and undone without rerunning them.
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    for stage in ("validate", "preprocess", "register"):
        deps = {dep["path"] for dep in lock[stage]["deps"]}
        assert "data/ingested/manifest.csv" in deps and "data/ingested" not in deps, stage
    edited = sorted((project / "data/ingested/images").rglob("*.jpg"))[0]
    original = edited.read_bytes()
    edited.unlink()
    edited.write_bytes(b"edited by hand")
    assert "modified:           data/ingested" in run(["dvc", "status", "ingest"], project).stdout
    assert stages_run(run(["dvc", "repro"], project).stdout) == ["source"] and edited.read_bytes() == original

    # night 2: killed during preprocess, then during training; the next run completes it
    for seed in (84, 85):
        (photos / f"dog/night-{seed}.jpg").write_bytes(image_bytes("dog", (52, 40), "JPEG", seed=seed))
    for stage in ("preprocess", "train"):
        _kill_when(project, f"Running stage '{stage}'")
        run(["catdog", "repair-lock"], project)  # DVC may have been killed while it rewrote dvc.lock
    assert "Running stage 'register'" in run(["dvc", "repro"], project).stdout
    assert "pipeline  up to date" in run(["catdog", "status"], project).stdout
    registry = Registry(project / "data/registry")
    assert registry.versions() == ["v0001", "v0002"] and registry.state()["production"] in registry.versions()
    for version in registry.versions():
        assert sha256_file(registry.versions_dir / version / "model.keras") == registry.card(version)["model_sha256"]
    assert {"dog/night-84.jpg", "dog/night-85.jpg"} <= ingested_names(project)

    # night 3: much brighter photos arrive: a drift warning, or a failure before training when asked
    production = registry.state()["production"]
    for label in ("cat", "dog"):
        for i in range(12):
            data = image_bytes(label, (40 + i, 36 + 2 * i), "JPEG", seed=600 + i + (50 if label == "dog" else 0))
            (photos / label / f"bright-{i}.jpg").write_bytes(inverted(data))
    out = run(["dvc", "repro", "validate"], project).stdout
    assert f"validate: WARNING: drift in the 24 new images vs production {production}'s: brightness" in out
    set_params(project, {"validate": {"fail_on_drift": True}})
    failed = run(["dvc", "repro", "validate"], project, check=False)
    assert failed.returncode != 0 and "validate.fail_on_drift is on" in failed.stdout + failed.stderr

    # the source vanishes: a clear error, and nothing that was there is touched
    before = {
        path: path.read_bytes()
        for path in [
            project / "data/ingested/manifest.csv",
            project / "data/registry/state.json",
            project / "data/source/manifest.csv",
        ]
    }
    shutil.rmtree(photos)
    failed = run(["dvc", "repro"], project, check=False)
    assert failed.returncode != 0
    assert f"ingest.source: no such file or folder {str(photos)!r}" in failed.stderr + failed.stdout
    assert {path: path.read_bytes() for path in before} == before
