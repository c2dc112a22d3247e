"""catdog serve keeps serving whatever the machine does to its own files: the prediction log's disk
full, its folder removed. Requests are answered; what could not be recorded is
counted in /metrics and, once recording works again, `catdog monitor` shows the gap."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx

from tests.conftest import BIN, env
from tests.test_machine_faults import tmpfs
from tests.test_serve import constant_model, files, photo, register, serve_project, server


def _predict(url: str, count: int) -> None:
    for i in range(count):
        answer = httpx.post(f"{url}/predict", files=files(("a.jpg", photo("dog", i))), timeout=60)
        assert answer.status_code == 200, answer.text


def _unrecorded(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith('catdog_unrecorded_total{what="predictions"}'):
            return float(line.split()[-1])
    return 0.0


def _records(serving) -> int:
    return sum(len(p.read_text().splitlines()) for p in serving.glob("predictions-*.jsonl"))


def test_a_full_log_disk_loses_records_not_answers_and_monitor_shows_the_gap(tmp_path):
    project = serve_project(tmp_path)
    register(project, constant_model(2.0))
    serving = project / "data" / "serving"
    with tmpfs(serving, "size=256k") as mount, server(project) as url:
        _predict(url, 2)
        assert _records(serving) == 2
        filler = mount / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=100000"], capture_output=True)
        _predict(url, 20)  # the disk is full (the log's last page may still take a few lines)
        full_lost = _unrecorded(url)
        assert full_lost > 0 and _records(serving) + full_lost == 22
        filler.unlink()
        _predict(url, 1)  # room again: recording works again, by itself
        lost = _unrecorded(url)
        assert lost == full_lost and _records(serving) + lost == 23
        gaps = (serving / "gaps.jsonl").read_text().splitlines()
        assert len(gaps) == 1 and f'"lost": {int(lost)}' in gaps[0] and "No space left on device" in gaps[0]
        log = (project / f"serve-{url.rsplit(':', 1)[1]}.log").read_text()
        assert log.count("cannot record predictions") == 1  # said once, not once per request
        monitor = subprocess.run(
            [str(BIN / "catdog"), "monitor"], cwd=project, env=env(), capture_output=True, text=True, check=True
        )
        assert f"GAP: {int(lost)} predictions not recorded" in monitor.stdout, monitor.stdout


def test_a_removed_log_folder_is_made_again(tmp_path):
    project = serve_project(tmp_path)
    register(project, constant_model(2.0))
    serving = project / "data" / "serving"
    with server(project) as url:
        _predict(url, 1)
        shutil.rmtree(serving)
        _predict(url, 2)
        assert _records(serving) == 2 and _unrecorded(url) == 0


def test_a_damaged_new_production_model_keeps_the_old_one_serving_and_says_why(tmp_path):
    from catdog.registry.store import Registry

    project = serve_project(tmp_path, reload_seconds=1.0)
    register(project, constant_model(2.0))  # v0001, production
    registry = Registry(project / "data" / "registry")
    with server(project) as url:
        second = register(project, constant_model(-2.0))  # v0002, a candidate ...
        model = registry.versions_dir / second / "model.keras"
        whole = model.read_bytes()
        registry.promote(second, force="test: promoted, then its file damaged")
        model.chmod(0o644)
        model.write_bytes(whole[:1000])  # ... half copied, say, onto a shared folder
        time.sleep(3)  # several reload checks
        health = httpx.get(f"{url}/healthz", timeout=30).json()
        assert health == {"status": "ready", "model_version": "v0001"}
        _predict(url, 1)
        log = (project / f"serve-{url.rsplit(':', 1)[1]}.log").read_text()
        assert "cannot load the model" in log and second in log
