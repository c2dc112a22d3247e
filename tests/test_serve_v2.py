"""The Open Inference Protocol (v2) of `catdog serve`, spoken by a client no one here wrote:
tritonclient[http], against a real server process."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from tests.conftest import MAX_PIXELS, run
from tests.test_serve import (  # noqa: F401
    TOKEN,
    photo,
    random_model_server,
    register,
    serve_project,
    server,
)

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


def client(url: str):
    return httpclient.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=120)


def test_tritonclient_gets_health_metadata_and_the_answers_of_catdog_predict(random_model_server):
    url, project, version = random_model_server
    triton = client(url)
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready("catdog")
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = triton.get_model_metadata("catdog")
    assert meta["versions"] == [version]
    assert meta["inputs"] == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "pixels", "datatype": "UINT8", "shape": [-1, 32, 32, 1]},
    ]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("p_dog", "FP32"), ("label", "BYTES")]
    assert not triton.is_model_ready("resnet")

    pictures = [photo("cat" if i % 2 else "dog", 40 + i) for i in range(3)]
    for i, data in enumerate(pictures):
        (project / f"v2-{i}.jpg").write_bytes(data)
    expected = json.loads(
        run(
            ["catdog", "--project", str(project), "predict", "--json", *[f"v2-{i}.jpg" for i in range(3)]], project
        ).stdout
    )
    want_p, want_labels = [e["p_dog"] for e in expected], [e["label"] for e in expected]

    image = httpclient.InferInput("image", [3], "BYTES")
    image.set_data_from_numpy(np.array(pictures, dtype=object), binary_data=True)
    result = triton.infer(
        "catdog", [image], outputs=[httpclient.InferRequestedOutput("p_dog"), httpclient.InferRequestedOutput("label")]
    )
    np.testing.assert_allclose(result.as_numpy("p_dog"), want_p, atol=1e-5)
    assert [x.decode() for x in result.as_numpy("label")] == want_labels
    assert result.get_response()["model_version"] == version

    from catdog.data.images import load_model_input

    pixels = np.stack([load_model_input(data, 32, max_pixels=MAX_PIXELS) for data in pictures])[..., np.newaxis]
    for binary in (True, False):  # the binary extension, then plain JSON numbers
        tensor = httpclient.InferInput("pixels", [3, 32, 32, 1], "UINT8")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        wanted = [httpclient.InferRequestedOutput("p_dog", binary_data=binary)]
        answer = triton.infer("catdog", [tensor], outputs=wanted, model_version=version)
        np.testing.assert_allclose(answer.as_numpy("p_dog"), want_p, atol=1e-5)

    as_json = httpx.post(
        f"{url}/v2/models/catdog/infer",
        timeout=60,
        json={
            "id": "42",
            "inputs": [
                {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(pictures[0]).decode()]}
            ],
        },
    )
    body = as_json.json()
    assert body["id"] == "42" and body["outputs"][0]["data"][0] == pytest.approx(want_p[0], abs=1e-5)
    assert body["outputs"][1] == {"name": "label", "datatype": "BYTES", "shape": [1], "data": [want_labels[0]]}


def test_protocol_errors_have_the_error_form_and_the_right_status(random_model_server):
    url, _, _ = random_model_server
    triton = client(url)
    wrong = httpclient.InferInput("tensor", [1], "FP32")
    wrong.set_data_from_numpy(np.zeros(1, np.float32))
    with pytest.raises(InferenceServerException, match="datatype FP32 is not accepted"):
        triton.infer("catdog", [wrong])
    broken = httpclient.InferInput("image", [2], "BYTES")
    broken.set_data_from_numpy(np.array([photo("dog", 1), b"not a picture"], dtype=object))
    with pytest.raises(InferenceServerException, match=r"image\[1\]: not an image"):
        triton.infer("catdog", [broken])
    cases = {
        "/v2/models/resnet/infer": (404, "no model 'resnet'"),
        "/v2/models/catdog/versions/v0099/infer": (404, "no model version 'v0099'"),
    }
    for path, (status, message) in cases.items():
        answer = httpx.post(
            f"{url}{path}",
            json={"inputs": [{"name": "image", "shape": [0], "datatype": "BYTES", "data": []}]},
            timeout=60,
        )
        assert answer.status_code == status and message in answer.json()["error"], answer.text
    unknown = httpx.get(f"{url}/v2/models/catdog/versions/v0099/ready", timeout=60)
    assert unknown.status_code == 404 and "no model version 'v0099'" in unknown.json()["error"]
    assert "/data/registry" not in unknown.text and "<registry>" in unknown.text  # no server paths
    not_json = httpx.post(f"{url}/v2/models/catdog/infer", content=b"{nope", timeout=60)
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    not_base64 = httpx.post(
        f"{url}/v2/models/catdog/infer",
        timeout=60,
        json={"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]},
    )
    assert not_base64.status_code == 400 and "base64" in not_base64.json()["error"]


def test_the_token_is_needed_and_tritonclient_can_send_it(tmp_path):
    from tests.test_serve import constant_model

    project = serve_project(tmp_path)
    register(project, constant_model(3.0))
    with server(project, extra_env={"CATDOG_SERVE_TOKEN": TOKEN}) as url:
        triton = client(url)
        with pytest.raises(InferenceServerException):
            triton.get_model_metadata("catdog")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert triton.get_model_metadata("catdog", headers=auth)["name"] == "catdog"
        image = httpclient.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([photo("dog", 2)], dtype=object))
        answer = triton.infer("catdog", [image], headers=auth)
        assert [x.decode() for x in answer.as_numpy("label")] == ["dog"]
