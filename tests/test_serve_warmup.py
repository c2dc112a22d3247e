"""No cold switch: a hot-reloaded model is warmed up before it answers anyone."""

from __future__ import annotations

import time

import httpx

from tests.conftest import run
from tests.test_serve import (
    constant_model,
    files,
    photo,
    register,
    serve_project,
    server,
)


def _latency(url: str, seed: int) -> tuple[float, str]:
    start = time.perf_counter()
    answer = httpx.post(f"{url}/predict", files=files(("a.jpg", photo("dog", seed))), timeout=60).json()
    return time.perf_counter() - start, answer["model_version"]


def test_the_first_requests_on_a_new_version_are_no_slower_than_the_old_ones_p99(tmp_path):
    project = serve_project(tmp_path, reload_seconds=0.2)
    first = register(project, constant_model(-2.0))
    second = register(project, constant_model(2.0), accuracy=0.5)
    with server(project) as url:
        for seed in range(5):
            _latency(url, seed)
        old = sorted(_latency(url, seed)[0] for seed in range(40))
        p99 = old[int(0.99 * len(old))]
        run(["catdog", "--project", str(project), "models", "promote", second, "--force", "warm-up test"], project)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/healthz").json()["model_version"] != second:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        new = [_latency(url, 100 + seed) for seed in range(5)]
    assert {version for _, version in new} == {second} and first != second
    slowest = max(seconds for seconds, _ in new)
    print(f"old p99 {1000 * p99:.0f} ms, first 5 on {second}: {[round(1000 * s) for s, _ in new]} ms")
    assert slowest <= max(1.5 * p99, p99 + 0.05), f"the first request on {second} took {slowest:.3f} s"
