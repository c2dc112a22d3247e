"""What `catdog serve` records, and how it holds its memory: real server processes, real clients."""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from tests.test_serve import files, photo, register, serve_project, server_process


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def noise_jpeg(side: int, seed: int = 0) -> bytes:
    """A valid JPEG of about 1.1 bytes per pixel: the largest kind of upload for its side."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_every_answered_image_is_in_the_log_and_kept_after_the_server_is_killed(tmp_path):
    from catdog.model.network import build_model
    from catdog.monitoring.prediction_log import InputStore, read_log

    project = serve_project(tmp_path, keep_inputs=True)
    version = register(project, build_model(image_size=32))
    answered = []
    with server_process(project) as (url, process):
        for i in range(12):
            body = [(f"p{i}.jpg", photo("dog" if i % 2 else "cat", i)), (f"q{i}.png", photo("cat", 50 + i))]
            if i % 4 == 0:
                body.append((f"bad{i}.jpg", b"not a picture"))
            response = httpx.post(f"{url}/predict", files=files(*body), timeout=60)
            assert response.status_code in (200, 422), response.text
            answered += [(name, data, result) for (name, data), result in zip(body, response.json()["results"])]
        process.send_signal(signal.SIGKILL)  # no shutdown, no flush at exit
        process.wait(timeout=30)

    logs = sorted((project / "data" / "serving").glob("predictions-*.jsonl"))
    assert [p.name for p in logs] == [f"predictions-{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl"]
    lines = logs[0].read_text().splitlines()
    assert len(lines) == len(answered) and all(json.loads(line) for line in lines)
    records = read_log(project / "data" / "serving")
    store = InputStore(project / "data" / "serving" / "inputs")
    for (name, data, result), (_, record) in zip(answered, records.iterrows()):
        assert record["file"] == name and record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["model_version"] == version and record["latency_ms"] > 0
        if "error" in result:
            assert "not an image" in record["error"] and record["p_dog"] != record["p_dog"]  # NaN: no answer
            continue
        assert record["p_dog"] == result["p_dog"] and record["label"] == result["label"]
        image = Image.open(io.BytesIO(data))
        assert (record["width"], record["height"]) == image.size
        assert record["aspect"] == round(image.width / image.height, 4) and 0 < record["brightness"] < 255
        assert store.find(record["sha256"]).read_bytes() == data, "the upload is kept byte for byte"
    assert len(store.all()) == len({hashlib.sha256(d).hexdigest() for _, d, r in answered if "error" not in r})


def test_without_keep_inputs_no_upload_is_stored_and_logging_can_be_off(tmp_path):
    from catdog.model.network import build_model

    project = serve_project(tmp_path, log_predictions=False)
    register(project, build_model(image_size=32))
    with server_process(project) as (url, _):
        assert httpx.post(f"{url}/predict", files=files(("a.jpg", photo("cat", 1))), timeout=60).status_code == 200
    assert not list((project / "data" / "serving").rglob("*.*"))


def test_a_flood_of_maximal_uploads_is_refused_with_retry_after_while_memory_stays_bounded(tmp_path):
    """Over the budget the server answers 503 + Retry-After at once; nothing fails to connect, and a
    small request during the flood is answered or told when to retry."""
    from catdog.model.network import build_model

    big = noise_jpeg(1100)  # ~1.3 MB, a valid photo
    limit = len(big) + 1000
    project = serve_project(
        tmp_path, max_upload_bytes=limit, max_files=4, max_inflight_bytes=2 * 4 * limit + 2**17, max_queued_images=64
    )
    register(project, build_model(image_size=32))
    statuses, small, errors, retry_after, lock = [], [], [], [], threading.Lock()
    with server_process(project) as (url, process):
        httpx.post(f"{url}/predict", files=files(("warm.jpg", big)), timeout=60)
        idle, peak, flooding = rss_mb(process.pid), 0.0, threading.Event()
        flooding.set()

        def flood():
            with httpx.Client(timeout=120) as client:
                for _ in range(4):
                    try:
                        response = client.post(f"{url}/predict", files=files(*[("big.jpg", big)] * 4))
                    except httpx.HTTPError as error:
                        with lock:
                            errors.append(repr(error))
                        continue
                    with lock:
                        statuses.append(response.status_code)
                        if response.status_code == 503:
                            retry_after.append(response.headers.get("retry-after"))

        def normal():
            while flooding.is_set():
                response = httpx.post(f"{url}/predict", files=files(("small.jpg", photo("dog", 3))), timeout=120)
                small.append((response.status_code, response.headers.get("retry-after")))
                time.sleep(0.05)

        threads = [threading.Thread(target=flood) for _ in range(12)]
        watcher = threading.Thread(target=normal)
        for thread in [*threads, watcher]:
            thread.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(process.pid))
            time.sleep(0.05)
        flooding.clear()
        watcher.join()
        metrics = httpx.get(f"{url}/metrics").text
    print(
        f"flood: {len(statuses)} answers {sorted(set(statuses))}, {statuses.count(503)} x 503, server RSS idle "
        f"{idle:.0f} MB, peak {peak:.0f} MB; small requests {[s for s, _ in small].count(200)} ok of {len(small)}"
    )
    assert not errors, errors[:3]
    assert len(statuses) == 48 and set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
    assert all(value and value.isdigit() and 1 <= int(value) <= 60 for value in retry_after)
    assert small and all(status == 200 or (status == 503 and after) for status, after in small)
    assert re.search(r"catdog_overloaded_total [1-9]", metrics)
    assert re.search(r'catdog_requests_total\{endpoint="/predict",outcome="overloaded"\} [1-9]', metrics)
    assert peak - idle < 400, f"server memory grew {peak - idle:.0f} MB under the flood"
