"""The `catdog serve` part of `make bench`: a bounded load test on loopback that stops by itself.

8 client threads send real photos, one per request, to a `catdog serve` process serving the spec
model at 256 px; in alternating pairs with the same photos through `catdog predict`'s function
in one process. Then the same load while the production model is switched twice.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx

from catdog.workspace import BIN, copy_project, tool_env

CLIENTS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _registry_of_two(project: Path, size: int) -> tuple[str, str]:
    """v0001 (production) and v0002 (candidate): untrained spec models; speed does not depend on weights."""
    from catdog.config import load_params
    from catdog.model import build_model
    from catdog.gate import Verdict
    from catdog.registry import Registry

    registry, versions = Registry(project / "data" / "registry"), []
    card = {"params": load_params(project / "params.yaml").to_dict(), "training": {},
            "data_fingerprint": "bench", "code_revision": "bench"}
    for seed, accuracy in ((0, 0.9), (1, 0.5)):
        import keras

        keras.utils.set_random_seed(seed)
        path = project / f"bench-{seed}.keras"
        build_model(size).save(path)
        verdict = Verdict(not versions, "bench: the first is production, the second a candidate")
        versions.append(registry.register(path, {**card, "metrics": {"accuracy": accuracy}}, verdict,
                                          compared_with=registry.state()["production"]).version)
    return versions[0], versions[1]


@contextlib.contextmanager
def _server(project: Path):
    port = _free_port()
    log = open(project / "serve.log", "w")
    process = subprocess.Popen([str(BIN / "catdog"), "--project", str(project), "serve", "--port", str(port)],
                               env=tool_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"catdog serve exited: {(project / 'serve.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("catdog serve was not ready after 180 s")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _load(url: str, photos: list[tuple[str, bytes]], requests: int | None = None, during=None) -> dict:
    """POST /predict of one photo each from CLIENTS threads: `requests` of them, or as many as
    fit while `during` runs beside them."""
    latencies, failures, versions, lock = [], [], [], threading.Lock()
    done = threading.Event()
    counter = iter(range(requests) if requests else itertools.count())

    def client():
        with httpx.Client(timeout=120) as http:
            for i in counter:  # shared iterator: the threads take the next request number until none is left
                if done.is_set():
                    break
                name, data = photos[i % len(photos)]
                start = time.perf_counter()
                try:
                    response = http.post(f"{url}/predict", files=[("files", (name, data, "image/jpeg"))])
                    ok = response.status_code == 200
                    version = response.json()["model_version"] if ok else None
                except httpx.HTTPError as error:
                    ok, version, response = False, None, error
                with lock:
                    latencies.append(time.perf_counter() - start)
                    (versions.append(version) if ok else failures.append(str(response)[:200]))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    if during:
        try:
            during()
        finally:
            done.set()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    latencies.sort()
    requests = len(latencies)
    return {"requests": requests, "seconds": seconds, "images_per_second": requests / seconds,
            "p50_ms": 1000 * latencies[len(latencies) // 2], "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "errors": len(failures), "first_errors": failures[:3],
            "versions_in_order": [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]}


def bench_serve(photo_dir: Path, work: Path, size: int, requests: int, pairs: int) -> dict:
    import shutil

    from catdog.predict import load_for_prediction, predict_files
    from catdog.registry import Registry

    project = work / "serve"
    if project.exists():
        shutil.rmtree(project)
    copy_project(project)
    first, second = _registry_of_two(project, size)
    files = sorted(photo_dir.rglob("*.jpg"))
    photos = [(path.name, path.read_bytes()) for path in files]
    per_pair = requests // pairs
    loaded = load_for_prediction(Registry(project / "data" / "registry"), first)

    def one_process() -> float:  # the same photos, as many, through catdog predict's function
        done, start = 0, time.perf_counter()
        while done < per_pair:  # rounds of distinct files: predict_files answers a repeated path once
            chosen = files[: per_pair - done]
            predict_files(loaded.model, chosen, loaded.image_size, loaded.resize, loaded.threshold)
            done += len(chosen)
        return per_pair / (time.perf_counter() - start)

    with _server(project) as (url, pid):
        _load(url, photos, 4 * CLIENTS)  # warm-up: the first calls trace the graph
        one_process()
        rss_start = _rss_mb(pid)
        served, alone = [], []
        for _ in range(pairs):
            served.append(_load(url, photos, per_pair))
            alone.append(one_process())
        rss_end = _rss_mb(pid)

        def serving(version: str) -> None:
            deadline = time.monotonic() + 120
            while httpx.get(f"{url}/healthz", timeout=10).json().get("model_version") != version:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not switch to {version} within 120 s")
                time.sleep(0.2)

        def switch_twice():  # promote, wait until it serves, then roll back, each under load
            registry = Registry(project / "data" / "registry")
            time.sleep(5)
            registry.promote(second, force="bench: switching under load")
            serving(second)
            time.sleep(5)
            registry.rollback()
            serving(first)
            time.sleep(5)

        switching = _load(url, photos, during=switch_twice)

    throughput = statistics.median(r["images_per_second"] for r in served)
    one = statistics.median(alone)
    return {"unit": "img/s", "catdog": throughput, "baseline": one, "ratio": throughput / one,
            "samples": [[r["images_per_second"] for r in served], alone],
            "requests": per_pair * pairs, "clients": CLIENTS,
            "p50_ms": statistics.median(r["p50_ms"] for r in served),
            "p99_ms": statistics.median(r["p99_ms"] for r in served),
            "errors": sum(r["errors"] for r in served), "rss_start_mb": rss_start, "rss_end_mb": rss_end,
            "rss_growth": rss_end / rss_start - 1, "switching": switching,
            "catdog_is": f"catdog serve, {CLIENTS} clients, one photo per request, batching on",
            "baseline_is": "catdog.predict.predict_files over the same photos in one process",
            "target": ">= 0.8x, no errors, memory flat within 10%, no failed request while switching"}
