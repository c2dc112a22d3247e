"""Preprocessing fanned out as mapped Prefect tasks, on threads and on a local Dask cluster.

Each run must write exactly what `catdog preprocess` under `dvc repro` writes, record it in
dvc.lock (so DVC sees the stage as current), skip when nothing changed, and keep the previous
output when a shard fails.
"""

import json
import shutil

import pytest

from tests.conftest import make_project, run, set_params

pytest.importorskip("prefect_dask")
from flows.preprocess import fan_out_preprocess  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dvc_current(project) -> bool:
    return json.loads(run(["dvc", "status", "--json", "preprocess"], project).stdout or "{}") == {}


@pytest.fixture
def validated_project(tmp_path):
    project = make_project(tmp_path / "project")
    set_params(project, {"preprocess": {"shard_size": 4, "workers": 2}})  # many shards, two workers
    run(["dvc", "repro", "validate", "testset"], project)  # everything before preprocess
    return project


def test_fan_out_writes_what_the_dvc_stage_writes_on_threads_and_dask(validated_project):
    project, output = validated_project, validated_project / "data/preprocessed"

    threads = fan_out_preprocess(str(project), "threads")
    assert threads["ran"] and threads["outputs"] == ["data/preprocessed"]
    assert _dvc_current(project)
    fanned_out = _files(output)
    train_shards = [name for name in fanned_out if name.startswith("train/images-")]
    assert len(train_shards) > 2, "the tiny project should give several shards per split"
    assert fan_out_preprocess(str(project), "threads")["ran"] is False  # unchanged: skipped

    # The same stage run by DVC itself gives the same bytes (and the same dvc.lock entry).
    lock_after_fan_out = (project / "dvc.lock").read_text()
    run(["dvc", "repro", "--force", "--single-item", "preprocess"], project)
    assert _files(output) == fanned_out
    assert (project / "dvc.lock").read_text() == lock_after_fan_out

    set_params(project, {"preprocess": {"shard_size": 5}})
    assert not _dvc_current(project)
    dask = fan_out_preprocess(str(project), "dask")  # a temporary local cluster, no dashboard
    assert dask["ran"] and _dvc_current(project)
    reshaped = _files(output)
    assert {k: v for k, v in reshaped.items() if k.endswith("meta.json")} == {
        k: v for k, v in fanned_out.items() if k.endswith("meta.json")
    }
    run(["dvc", "repro", "--force", "--single-item", "preprocess"], project)
    assert _files(output) == reshaped


def test_a_failing_shard_keeps_the_previous_output(validated_project):
    project, output = validated_project, validated_project / "data/preprocessed"
    fan_out_preprocess(str(project), "threads")
    before, lock_before = _files(output), (project / "dvc.lock").read_text()

    victim = sorted((project / "data/ingested/images").rglob("*.*"))[5]
    victim.unlink()  # a hard link into ingest's store: replaced, not written through
    victim.write_bytes(b"not an image any more")  # changed after validation: a shard task fails ...
    shutil.rmtree(project / "data/cache/preprocess-arrays")  # ... when it has to convert it, and it
    set_params(project, {"preprocess": {"shard_size": 5}})  # has to (the stage follows ingest's manifest)
    with pytest.raises(Exception, match=victim.name):
        fan_out_preprocess(str(project), "threads")
    assert _files(output) == before
    assert (project / "dvc.lock").read_text() == lock_before
    assert not list((project / "data").glob(".preprocessed.*"))  # no partial output left behind
