"""The `catdog serve` part of `make bench`: a bounded load test on loopback that stops by itself.

8 client threads send real photos, one per request, to a `catdog serve` process serving the spec
model at 256 px, with the prediction log on and, in turn, off, and with a shadow candidate; in
alternating rounds with the same
photos through `catdog predict`'s function in one process. Then the same load while the
production model is switched twice. `bench_flood` sends the largest requests allowed, many at
once, and follows the server's memory.
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

from catdog.devtools.workspace import BIN, copy_project, set_params, tool_env

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
    from catdog.core.config import load_params
    from catdog.model.network import build_model
    from catdog.registry.gate import Verdict
    from catdog.registry.store import Registry

    registry, versions = Registry(project / "data" / "registry"), []
    card = {
        "params": load_params(project / "params.yaml").to_dict(),
        "training": {},
        "data_fingerprint": "bench",
        "code_revision": "bench",
    }
    for seed, accuracy in ((0, 0.9), (1, 0.5)):
        import keras

        keras.utils.set_random_seed(seed)
        path = project / f"bench-{seed}.keras"
        build_model(size).save(path)
        verdict = Verdict(not versions, "bench: the first is production, the second a candidate")
        versions.append(
            registry.register(
                path, {**card, "metrics": {"accuracy": accuracy}}, verdict, compared_with=registry.state()["production"]
            ).version
        )
    return versions[0], versions[1]


@contextlib.contextmanager
def _server(project: Path):
    port = _free_port()
    log = open(project / "serve.log", "w")
    process = subprocess.Popen(
        [str(BIN / "catdog"), "--project", str(project), "serve", "--port", str(port)],
        env=tool_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
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
    return {
        "requests": requests,
        "seconds": seconds,
        "images_per_second": requests / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "errors": len(failures),
        "first_errors": failures[:3],
        "versions_in_order": [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v],
    }


def bench_serve(photo_dir: Path, work: Path, size: int, requests: int, pairs: int) -> dict:
    import shutil

    from catdog.core.config import ValidateParams
    from catdog.registry.store import Registry
    from catdog.serving.predict import load_for_prediction, predict_files

    project, unlogged, shadowed = work / "serve", work / "serve-unlogged", work / "serve-shadow"
    for folder in (project, unlogged, shadowed):
        if folder.exists():
            shutil.rmtree(folder)
        copy_project(folder)
    first, second = _registry_of_two(project, size)
    set_params(unlogged, {"serve": {"log_predictions": False}})
    set_params(shadowed, {"serve": {"shadow": "candidate"}})  # v0002, the candidate, shadows v0001
    for other in (unlogged, shadowed):
        (other / "data").mkdir(exist_ok=True)
        (other / "data" / "registry").symlink_to(project / "data" / "registry")  # the same models
    files = sorted(photo_dir.rglob("*.jpg"))
    photos = [(path.name, path.read_bytes()) for path in files]
    per_pair = requests // pairs
    loaded = load_for_prediction(Registry(project / "data" / "registry"), first)

    def one_process() -> float:  # the same photos, as many, through catdog predict's function
        done, start = 0, time.perf_counter()
        while done < per_pair:  # rounds of distinct files: predict_files answers a repeated path once
            chosen = files[: per_pair - done]
            predict_files(
                loaded.model,
                chosen,
                loaded.image_size,
                loaded.resize,
                loaded.threshold,
                max_pixels=ValidateParams().max_pixels,
            )
            done += len(chosen)
        return per_pair / (time.perf_counter() - start)

    with _server(project) as (url, pid), _server(unlogged) as (url_unlogged, _), _server(shadowed) as (url_shadowed, _):
        for address in (url, url_unlogged, url_shadowed):
            _load(address, photos, 4 * CLIENTS)  # warm-up: the first calls trace the graph
        one_process()
        rss_start = _rss_mb(pid)
        served, not_logged, with_shadow, alone, shadow_scored = [], [], [], [], []
        for _ in range(pairs):
            served.append(_load(url, photos, per_pair))
            not_logged.append(_load(url_unlogged, photos, per_pair))
            before = _counter(url_shadowed, "catdog_shadow_images_total")
            with_shadow.append(_load(url_shadowed, photos, per_pair))
            shadow_scored.append(_counter(url_shadowed, "catdog_shadow_images_total") - before)
            alone.append(one_process())
        rss_end = _rss_mb(pid)
        log_lines = sum(len(f.read_text().splitlines()) for f in (project / "data" / "serving").glob("*.jsonl"))

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
    unlogged_throughput = statistics.median(r["images_per_second"] for r in not_logged)
    logging = {
        "logged": throughput,
        "not_logged": unlogged_throughput,
        "ratio": throughput / unlogged_throughput,
        "pair_ratios": [a["images_per_second"] / b["images_per_second"] for a, b in zip(served, not_logged)],
        "p99_ms": [statistics.median(r["p99_ms"] for r in runs) for runs in (served, not_logged)],
        "log_lines": log_lines,
        "target": ">= 0.95x",
    }
    shadow_throughput = statistics.median(r["images_per_second"] for r in with_shadow)
    shadow = {
        "with_shadow": shadow_throughput,
        "ratio": shadow_throughput / throughput,
        "pair_ratios": [a["images_per_second"] / b["images_per_second"] for a, b in zip(with_shadow, served)],
        "p99_ms": statistics.median(r["p99_ms"] for r in with_shadow),
        "p99_ratio": statistics.median(r["p99_ms"] for r in with_shadow)
        / statistics.median(r["p99_ms"] for r in served),
        "scored_share": sum(shadow_scored) / (per_pair * pairs),
        "errors": sum(r["errors"] for r in with_shadow),
        "target": ">= 0.7x throughput, p99 within 1.5x",
    }
    return {
        "unit": "img/s",
        "catdog": throughput,
        "baseline": one,
        "ratio": throughput / one,
        "logging": logging,
        "shadow": shadow,
        "samples": [[r["images_per_second"] for r in served], alone],
        "requests": per_pair * pairs,
        "clients": CLIENTS,
        "p50_ms": statistics.median(r["p50_ms"] for r in served),
        "p99_ms": statistics.median(r["p99_ms"] for r in served),
        "errors": sum(r["errors"] for r in served),
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth": rss_end / rss_start - 1,
        "switching": switching,
        "catdog_is": f"catdog serve, {CLIENTS} clients, one photo per request, batching on",
        "baseline_is": "catdog.serving.predict.predict_files over the same photos in one process",
        "target": ">= 0.8x, no errors, memory flat within 10%, no failed request while switching",
    }


def _counter(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def largest_jpeg(limit: int) -> bytes:
    """A valid noise JPEG just under `limit` bytes: the most a single upload may be."""
    import io

    import numpy as np
    from PIL import Image

    side, rng = int((limit / 1.2) ** 0.5), np.random.default_rng(0)
    while True:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=95)
        if buffer.tell() <= limit:
            return buffer.getvalue()
        side = int(side * 0.97)


def bench_flood(photo_dir: Path, work: Path, size: int, clients: int = 8, per_client: int = 3) -> dict:
    """`clients` threads each send `per_client` requests of serve.max_files photos of
    serve.max_upload_bytes (params.yaml's defaults) at once, while one more client sends one real
    photo at a time; the server's RSS is sampled throughout. Bounded: it stops by itself."""
    import shutil

    from catdog.core.config import load_params

    project = work / "flood"
    if project.exists():
        shutil.rmtree(project)
    copy_project(project)
    _registry_of_two(project, size)
    limits = load_params(project / "params.yaml").serve
    big = largest_jpeg(limits.max_upload_bytes)
    small = next(iter(sorted(photo_dir.rglob("*.jpg")))).read_bytes()
    statuses, normal, errors, lock, flooding = [], [], [], threading.Lock(), threading.Event()

    def flood():
        body = [("files", (f"big-{i}.jpg", big, "image/jpeg")) for i in range(limits.max_files)]
        with httpx.Client(timeout=300) as http:
            for _ in range(per_client):
                try:
                    code = http.post(f"{url}/predict", files=body).status_code
                except httpx.HTTPError as error:
                    code = None
                    errors.append(repr(error)[:200])
                with lock:
                    statuses.append(code)

    def one_photo_at_a_time():
        with httpx.Client(timeout=300) as http:
            while flooding.is_set():
                start = time.perf_counter()
                try:
                    code = http.post(
                        f"{url}/predict", files=[("files", ("small.jpg", small, "image/jpeg"))]
                    ).status_code
                except httpx.HTTPError as error:
                    code = None
                    errors.append(repr(error)[:200])
                normal.append((code, time.perf_counter() - start))
                time.sleep(0.1)

    with _server(project) as (url, pid):
        _load(url, [("small.jpg", small)], 2 * CLIENTS)
        idle = peak = _rss_mb(pid)
        flooding.set()
        threads = [threading.Thread(target=flood) for _ in range(clients)]
        watcher = threading.Thread(target=one_photo_at_a_time)
        started = time.perf_counter()
        for thread in [*threads, watcher]:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, _rss_mb(pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        flooding.clear()
        watcher.join()
    return {
        "requests": len(statuses),
        "request_mb": limits.max_files * len(big) / 2**20,
        "seconds": seconds,
        "statuses": {str(code): statuses.count(code) for code in sorted(set(statuses), key=str)},
        "errors": len(errors),
        "first_errors": errors[:3],
        "idle_rss_mb": idle,
        "peak_rss_mb": peak,
        "growth_mb": peak - idle,
        "normal": {
            "requests": len(normal),
            "ok": sum(code == 200 for code, _ in normal),
            "retry": sum(code == 503 for code, _ in normal),
            "median_s": statistics.median(s for _, s in normal) if normal else None,
        },
        "target": "peak within 1,536 MB of idle; every request answered 200/503; none fails to connect",
    }
