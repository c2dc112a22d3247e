"""A registry in a shared folder (`register.registry`): a machine that trained nothing predicts and
serves with the production model another machine's `dvc repro` registered there."""

import httpx
import yaml

from tests.conftest import BIN, image_bytes, make_project, run, set_params
from tests.test_serve import server


def test_a_second_machine_predicts_and_serves_from_the_shared_registry(tmp_path):
    shared = tmp_path / "mnt" / "registry"  # a network mount on both machines
    trainer, other = make_project(tmp_path / "trainer"), make_project(tmp_path / "other")
    for project in (trainer, other):
        set_params(project, {"register": {"registry": str(shared), "min_accuracy": 0.0}})
    run(["dvc", "repro"], trainer)
    assert (shared / "versions" / "v0001" / "model.keras").exists()
    assert not (trainer / "data" / "registry").exists()

    listed = run([str(BIN / "catdog"), "models", "list"], other).stdout
    assert "v0001  production" in listed
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes("dog"))
    answer = run([str(BIN / "catdog"), "predict", "--json", str(photo)], other).stdout
    assert yaml.safe_load(answer)[0]["error"] is None
    with server(other) as url:
        assert httpx.get(f"{url}/models").json()["serving"] == "v0001"
