"""`catdog serve` as users run it: a real server process on a loopback port, a registry of tiny
models, real HTTP clients (and a real browser for the page, in test_serve_page.py)."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import BIN, REPO, env, image_bytes, run

TOKEN = "s3cret-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def constant_model(p_dog_logit: float):
    """A 32-px spec model that says the same for every image: sigmoid(logit)."""
    from catdog.model.network import build_model

    model = build_model(image_size=32)
    output = model.get_layer("p_dog")
    kernel, bias = output.get_weights()
    output.set_weights([np.zeros_like(kernel), np.full_like(bias, p_dog_logit)])
    return model


def register(project: Path, model, accuracy: float = 0.9, metrics: dict | None = None) -> str:
    from catdog.core.config import load_params
    from catdog.registry.gate import Verdict
    from catdog.registry.store import Registry

    path = project / f"model-{time.monotonic_ns()}.keras"
    model.save(path)
    card = {
        "params": load_params(project / "params.yaml").to_dict(),
        "metrics": {"accuracy": accuracy, **(metrics or {})},
        "training": {},
        "data_fingerprint": "test",
        "code_revision": "test",
    }
    registry = Registry(project / "data" / "registry")
    first = registry.state()["production"] is None  # the first becomes production, later ones are candidates
    return registry.register(path, card, Verdict(first, "test"), compared_with=registry.state()["production"]).version


def serve_project(tmp_path: Path, **serve) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["serve"].update(serve)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return project


@contextlib.contextmanager
def server(project: Path, *args: str, extra_env: dict | None = None):
    """`catdog serve` in its own process; yields its base URL once /healthz says ready."""
    with server_process(project, *args, extra_env=extra_env) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(project: Path, *args: str, extra_env: dict | None = None):
    """`catdog serve` in its own process; yields (base URL, the process) once /healthz says ready."""
    port = free_port()
    log = project / f"serve-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(BIN / "catdog"), "--project", str(project), "serve", "--port", str(port), *args],
            env={**env(), **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"catdog serve exited:\n{log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"not ready after 120 s:\n{log.read_text()}"
            time.sleep(0.3)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def files(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def photo(label: str, seed: int) -> bytes:
    return image_bytes(label, (48 + seed % 7, 40 + seed % 5), "JPEG", seed=seed)


@pytest.fixture(scope="module")
def random_model_server(tmp_path_factory):
    """One server for the read-only tests: production is a randomly initialised 32-px spec model."""
    from catdog.model.network import build_model

    project = serve_project(tmp_path_factory.mktemp("serve"), max_upload_bytes=100_000, max_files=4, max_wait_ms=50.0)
    version = register(project, build_model(image_size=32))
    with server(project) as url:
        yield url, project, version


def test_endpoints_answer_like_catdog_predict(random_model_server):
    url, project, version = random_model_server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ready", "model_version": version}
    listing = httpx.get(f"{url}/models").json()
    assert listing["serving"] == version and [m["version"] for m in listing["models"]] == [version]

    pictures = {f"{label}-{i}.jpg": photo(label, i) for label in ("cat", "dog") for i in range(2)}
    answer = httpx.post(f"{url}/predict", files=files(*pictures.items()), timeout=60)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["file"] for r in results] == list(pictures)
    assert {r["model_version"] for r in results} == {version}

    for name, data in pictures.items():
        (project / name).write_bytes(data)
    expected = run(["catdog", "--project", str(project), "predict", "--json", *pictures], project).stdout
    import json

    for got, want in zip(results, json.loads(expected)):
        assert got["label"] == want["label"]
        assert got["p_dog"] == pytest.approx(want["p_dog"], abs=1e-5)

    metrics = httpx.get(f"{url}/metrics").text
    assert re.search(r'catdog_requests_total\{endpoint="/predict",outcome="ok"\} [1-9]', metrics)
    assert re.search(r"catdog_images_predicted_total [1-9]", metrics)
    assert f'catdog_model_info{{version="{version}"}} 1.0' in metrics
    assert "catdog_predict_seconds_bucket" in metrics


def test_bad_uploads_get_their_reason_and_disturb_nothing(random_model_server):
    url, _, _ = random_model_server
    good = ("good.jpg", photo("dog", 1))
    bomb = io.BytesIO()
    Image.new("L", (7000, 7000)).save(bomb, "PNG")  # ~50 KB that would decode to 49 MB
    jpeg = photo("cat", 2)
    cases = {
        "notes.txt": (b"this is not a picture", "not an image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "cannot decode"),
        "bomb.png": (bomb.getvalue(), "decompression bomb"),
    }
    for name, (data, reason) in cases.items():
        answer = httpx.post(f"{url}/predict", files=files((name, data), good), timeout=60)
        assert answer.status_code == 422, (name, answer.text)
        bad, fine = answer.json()["results"]
        assert bad["file"] == name and reason in bad["error"], bad
        assert fine["label"] in ("cat", "dog"), "the good file of the same request is still answered"

    too_big = httpx.post(f"{url}/predict", files=files(("big.jpg", b"\xff" * 150_000)), timeout=60)
    assert too_big.status_code == 413 and "big.jpg" in too_big.json()["detail"]
    too_many = httpx.post(f"{url}/predict", files=files(*[good] * 5), timeout=60)
    assert too_many.status_code == 400 and "Too many files" in too_many.json()["detail"]
    whole_body = httpx.post(f"{url}/predict", files=files(*[("big.jpg", b"\xff" * 99_000)] * 6), timeout=60)
    assert whole_body.status_code == 413
    nothing = httpx.post(f"{url}/predict", data={"note": "no file"}, timeout=60)
    assert nothing.status_code == 400 and "no files" in nothing.json()["detail"]

    assert httpx.post(f"{url}/predict", files=files(good), timeout=60).status_code == 200
    metrics = httpx.get(f"{url}/metrics").text
    for outcome in ("bad_image", "too_large", "bad_request"):
        assert re.search(rf'catdog_requests_total\{{endpoint="/predict",outcome="{outcome}"\}} [1-9]', metrics)


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(random_model_server):
    url, project, _ = random_model_server
    pictures = [(f"img-{i}.jpg", photo("cat" if i % 2 else "dog", 100 + i)) for i in range(16)]
    alone = {
        name: httpx.post(f"{url}/predict", files=files((name, data)), timeout=60).json()["results"][0]["p_dog"]
        for name, data in pictures
    }
    assert len(set(alone.values())) > 8, "the images must get different scores for this test to mean anything"

    before = _batch_stats(httpx.get(f"{url}/metrics").text)
    together, start = {}, threading.Barrier(len(pictures))

    def client(name, data):
        start.wait()
        together[name] = httpx.post(f"{url}/predict", files=files((name, data)), timeout=60).json()

    threads = [threading.Thread(target=client, args=item) for item in pictures]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, answer in together.items():
        assert answer["results"][0]["file"] == name
        assert answer["results"][0]["p_dog"] == pytest.approx(alone[name], abs=1e-5)
    calls, images = (after - earlier for after, earlier in zip(_batch_stats(httpx.get(f"{url}/metrics").text), before))
    assert images == len(pictures) and calls < len(pictures) / 2, f"{images} images in {calls} model calls"


def _batch_stats(metrics: str) -> tuple[float, float]:
    count = float(re.search(r"catdog_batch_size_count (\S+)", metrics).group(1))
    total = float(re.search(r"catdog_batch_size_sum (\S+)", metrics).group(1))
    return count, total


def test_token_is_required_beyond_loopback_and_checked_everywhere_but_healthz(tmp_path):
    project = serve_project(tmp_path)
    refused = run(["catdog", "--project", str(project), "serve", "--host", "0.0.0.0"], project, check=False)
    assert refused.returncode == 2 and "CATDOG_SERVE_TOKEN" in refused.stderr

    version = register(project, constant_model(3.0))
    with server(project, extra_env={"CATDOG_SERVE_TOKEN": TOKEN}) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        for path in ("/models", "/metrics", "/"):
            assert httpx.get(f"{url}{path}").status_code == 401, path
        body = files(("a.jpg", photo("dog", 3)))
        assert httpx.post(f"{url}/predict", files=body).status_code == 401
        wrong = httpx.post(f"{url}/predict", files=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "CATDOG_SERVE_TOKEN" in wrong.json()["detail"]
        right = httpx.post(f"{url}/predict", files=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert right.status_code == 200 and right.json()["model_version"] == version
        assert httpx.get(f"{url}/?token={TOKEN}").status_code == 200


def test_hot_reload_under_load_never_fails_or_mixes_a_request(tmp_path):
    project = serve_project(tmp_path, reload_seconds=0.2)
    says = {register(project, constant_model(-4.0)): "cat"}  # v0001: production, always 'cat'
    says[register(project, constant_model(4.0), accuracy=0.5)] = "dog"  # v0002: a candidate, always 'dog'
    first, second = list(says)
    answers, failures, stop = [], [], threading.Event()

    def client(seed):
        body = files(("a.jpg", photo("cat", seed)), ("b.jpg", photo("dog", seed + 1)))
        while not stop.is_set():
            response = httpx.post(f"{url}/predict", files=body, timeout=60)
            if response.status_code != 200:
                failures.append(response.text)
                continue
            answers.append(response.json())

    def wait_for(version):
        deadline = time.monotonic() + 60
        while not answers or answers[-1]["model_version"] != version:
            assert time.monotonic() < deadline, f"still not serving {version}"
            time.sleep(0.1)

    with server(project) as url:
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            run(
                ["catdog", "--project", str(project), "models", "promote", second, "--force", "hot reload test"],
                project,
            )
            wait_for(second)
            run(["catdog", "--project", str(project), "models", "rollback"], project)
            wait_for(first)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        metrics = httpx.get(f"{url}/metrics").text
    assert not failures, failures[:3]
    for answer in answers:
        version = answer["model_version"]
        assert [r["model_version"] for r in answer["results"]] == [version, version]
        assert [r["label"] for r in answer["results"]] == [says[version]] * 2, answer
    seen = [a["model_version"] for a in answers]
    assert seen[0] == first and second in seen and seen[-1] == first
    assert re.search(r"catdog_model_loads_total 3\.0", metrics), "start, promotion, rollback"
    print(
        f"hot reload: {len(answers)} requests, none failed, versions in order: "
        f"{[v for i, v in enumerate(seen) if i == 0 or seen[i - 1] != v]}"
    )


def test_without_a_production_model_healthz_says_why_and_the_server_picks_one_up(tmp_path):
    project = serve_project(tmp_path, reload_seconds=0.2)
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "catdog"), "--project", str(project), "serve", "--port", str(port)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert health.status_code == 503 and "no production model yet" in health.json()["reason"]
        refused = httpx.post(f"{url}/predict", files=files(("a.jpg", photo("dog", 1))))
        assert refused.status_code == 503
        version = register(project, constant_model(2.0))
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/healthz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(f"{url}/healthz").json()["model_version"] == version
    finally:
        process.terminate()
        process.wait(timeout=30)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOTS = REPO / "test-output"


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver: run `make browser` (as root)"
)
def test_the_page_in_a_real_browser_answers_a_dropped_photo(random_model_server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, version = random_model_server
    picture = tmp_path / "my-dog.jpg"
    picture.write_bytes(photo("dog", 7))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=900,700",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(f"{url}/")
        wait = WebDriverWait(browser, 60)
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), f"model {version} is serving"))
        browser.find_element(By.ID, "files").send_keys(str(picture))
        label = wait.until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, ".card .label"))).text
        answer = browser.find_element(By.CSS_SELECTOR, ".card .answer").text
        why = browser.find_element(By.CSS_SELECTOR, ".card img.why")
        assert why.get_attribute("src").startswith("data:image/png;base64,")
        assert browser.execute_script("return arguments[0].naturalWidth", why) == 32, "the map of the 32-px input"
        SCREENSHOTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / "serve_page.png"))
    finally:
        browser.quit()
    assert label in ("cat", "dog")
    assert "my-dog.jpg" in answer and re.search(r"p\(dog\) = \d\.\d{4}", answer) and f"model {version}" in answer
    print(f"screenshot: {SCREENSHOTS / 'serve_page.png'}")
