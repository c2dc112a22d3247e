"""The container: its runtime requirements serve on their own, the KServe manifest has what KServe
needs, and the image builds where a container tool works."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.test_serve import (
    TOKEN,
    constant_model,
    free_port,
    photo,
    register,
    serve_project,
)

SERVE_LOCK = REPO / "deployments" / "container" / "requirements-serve.lock"


def test_the_kserve_manifest_runs_the_container_with_the_v2_protocol_probes():
    manifest = yaml.safe_load((REPO / "deployments" / "kserve-inferenceservice.yaml").read_text())
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == "catdog"
    [container] = manifest["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container" and container["image"]
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    env = {e["name"]: e for e in container["env"]}
    assert env["CATDOG_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "catdog-serve"


def test_the_dockerfile_is_multi_stage_slim_non_root_and_installs_only_the_serving_lock():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) == 2 and all(s.startswith("python:${PYTHON}-slim") for s in stages)
    assert re.search(r"^USER catdog$", text, re.MULTILINE) and "useradd" in text
    assert "ARG MODEL=deployments/container/no-model" in text and (REPO / "deployments/container/no-model").is_dir()
    assert "requirements-serve.lock" in text and '--port", "8080"' in text
    pinned = {line.split("==")[0].lower() for line in SERVE_LOCK.read_text().splitlines() if "==" in line}
    assert {"tensorflow-cpu", "keras", "fastapi", "uvicorn", "pillow"} <= pinned
    assert not pinned & {"prefect", "dvc", "great-expectations", "pytest"}, "pipeline tools are not served"
    lock = {
        line.split("==")[0].lower(): line.strip()
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    for line in SERVE_LOCK.read_text().splitlines():
        name = line.split("==")[0].lower()
        if "==" in line and name in lock:
            assert line.strip() == lock[name], f"the container serves {line.strip()}, the pipeline has {lock[name]}"


@contextlib.contextmanager
def _serving(python_bin, project, token):
    port = free_port()
    log = project / "container-serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(python_bin / "catdog"), "--project", str(project), "serve", "--host", "0.0.0.0", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                "PATH": f"{python_bin}:/usr/bin:/bin",
                "CATDOG_SERVE_TOKEN": token,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "HOME": str(project),
            },
        )
    try:
        yield f"http://127.0.0.1:{port}", process, log
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_the_runtime_requirements_alone_serve_the_v2_protocol(tmp_path):
    """What the image installs, in a fresh venv: the same entry point answers a v2 request, and
    none of the pipeline's tools is there."""
    venv = tmp_path / "serve-venv"
    uv = shutil.which("uv", path=str(REPO / ".venv" / "bin"))
    subprocess.run([uv, "venv", "--quiet", "--python", str(REPO / ".venv" / "bin" / "python"), str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"UV_COMPILE_BYTECODE": "0"}  # uv's cache
    source = tmp_path / "source"  # what the image copies (a build in the checkout would leave build/ there)
    source.mkdir()
    for part in ("pyproject.toml", "catdog", "tasks", "flows"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
        copy(
            REPO / part,
            source / part,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / part).is_dir() else {}),
        )
    for args in (["-r", str(SERVE_LOCK)], ["--no-deps", str(source)]):
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *args],
            check=True,
            env=env,
            timeout=900,
        )
    for tool in ("prefect", "dvc", "great_expectations"):
        missing = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {tool}"], capture_output=True)
        assert missing.returncode != 0, f"{tool} is not a serving requirement"

    project = serve_project(tmp_path)
    register(project, constant_model(3.0))
    with _serving(venv / "bin", project, TOKEN) as (url, process, log):
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:  # a probe: no token
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        import base64

        answer = httpx.post(
            f"{url}/v2/models/catdog/infer",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [base64.b64encode(photo("dog", 1)).decode()],
                    }
                ]
            },
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][1]["data"] == ["dog"]
        assert httpx.get(f"{url}/v2/models/catdog", timeout=10).status_code == 401, "everything else needs the token"


def _container_tool() -> str | None:
    for tool in ("docker", "podman"):
        if shutil.which(tool) and subprocess.run([tool, "info"], capture_output=True, timeout=30).returncode == 0:
            return tool
    return None


@pytest.mark.skipif(
    _container_tool() is None, reason="no working docker or podman here (a client without a daemon does not count)"
)
def test_the_image_builds(tmp_path):
    tool = _container_tool()
    built = subprocess.run(
        [tool, "build", "-t", "catdog-serve:test", str(REPO)], capture_output=True, text=True, timeout=3600
    )
    assert built.returncode == 0, built.stderr[-3000:]
