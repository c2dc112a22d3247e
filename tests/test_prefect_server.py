"""End to end against a real Prefect server: deploy, schedule, run train/nightly with a worker."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import (
    BIN,
    env,
    image_bytes,
    make_project,
    run,
    set_params,
    write_images,
)

pytestmark = pytest.mark.slow

CLIENT_QUERY = """
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
with get_client(sync_client=True) as client:
    deployment = client.read_deployment_by_name("train/nightly")
    schedules = client.read_deployment_schedules(deployment.id)
    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
    sweep = client.read_deployment_by_name("sweep/on-demand")
    result = {
        "sweep_entrypoint": sweep.entrypoint,
        "concurrency_limit": deployment.global_concurrency_limit.limit if deployment.global_concurrency_limit else None,
        "crons": [[s.schedule.cron, s.schedule.timezone] for s in schedules],
        "runs": [{"id": str(r.id), "state": r.state.type.value, "auto": r.auto_scheduled,
                  "parameters": r.parameters} for r in runs],
    }
    if len(sys.argv) > 1:
        flow_run = client.read_flow_run(sys.argv[1])
        result["run"] = {"state": flow_run.state.type.value, "message": flow_run.state.message}
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
        summaries = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["catdog-run-summary"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]),
            )
        )
        result["summary"] = summaries[0].data if summaries else None
print(json.dumps(result))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    server_env = {
        **env(),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "prefect server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:]
                    ) from None
                time.sleep(1)
        yield server_env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _run(args, cwd, server_env, timeout=600):
    result = subprocess.run(args, cwd=cwd, env=server_env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def _query(project, server_env, *args) -> dict:
    return json.loads(_run([sys.executable, "-c", CLIENT_QUERY, *args], project, server_env))


def _nightly(project, server, worker_dir, *params: str) -> dict:
    """Run train/nightly now through a process worker started in `worker_dir`; the run's final state."""
    prefect = str(BIN / "prefect")
    output = _run([prefect, "deployment", "run", "train/nightly", *params], project, server)
    flow_run_id = next(line.split()[-1] for line in output.splitlines() if "UUID" in line)
    _run([prefect, "worker", "start", "--pool", "catdog", "--run-once"], worker_dir, server, timeout=900)
    return _query(project, server, flow_run_id)


def test_deploy_schedule_and_run_nightly_with_a_worker(tmp_path, server):
    started = time.monotonic()
    project = make_project(tmp_path / "project")
    photos = write_images(tmp_path / "photos", per_class=12)
    set_params(project, {"ingest": {"source": str(photos)}})
    prefect = str(BIN / "prefect")
    _run([prefect, "work-pool", "create", "catdog", "--type", "process"], project, server)
    # Deployed the plain Prefect way, from the project folder, with no catdog-specific variable.
    _run([prefect, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all"], project, server)

    deadline = time.monotonic() + 60
    while True:
        state = _query(project, server)
        if [r for r in state["runs"] if r["auto"]] or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert state["crons"] == [["0 2 * * *", "Europe/Berlin"]]
    assert state["sweep_entrypoint"] == "flows/sweep.py:sweep"
    assert state["concurrency_limit"] == 1
    assert any(r["auto"] and r["state"] == "SCHEDULED" for r in state["runs"]), state

    # The worker starts elsewhere: the deployment itself must say where the project is.
    final = _nightly(project, server, tmp_path, "--param", 'overrides={"train.seed": 3}')
    assert final["run"]["state"] == "COMPLETED", final["run"]
    models = json.loads(run(["catdog", "models", "list", "--json"], project).stdout)
    assert [m["version"] for m in models] == ["v0001"]
    assert "seed: 3" in (project / "params.yaml").read_text()

    # New photos land in the folder: the next nightly run sees them, ingests them and retrains.
    (photos / "cat/new.jpg").write_bytes(image_bytes("cat", (52, 41), "JPEG", seed=501))
    (photos / "dog/new.jpg").write_bytes(image_bytes("dog", (47, 55), "JPEG", seed=502))
    second = _nightly(project, server, tmp_path)
    assert second["run"]["state"] == "COMPLETED", second["run"]
    summary = second["summary"]
    print(f"nightly summary after adding two photos:\n{summary}")
    assert "2 new photos (1 cat, 1 dog), 0 removed, 0 changed" in summary
    assert "| ingest | ran |" in summary and "| train | ran |" in summary
    for stage in ("validate", "preprocess"):  # only the new photos were decoded and converted again
        reuse = json.loads((project / f"data/cache/{stage}-reuse.json").read_text())
        assert reuse["computed"] <= 2 and reuse["reused"] >= 20, (stage, reuse)
    models = json.loads(run(["catdog", "models", "list", "--json"], project).stdout)
    assert [m["version"] for m in models] == ["v0001", "v0002"]
    print(f"end-to-end Prefect server test wall time: {time.monotonic() - started:.0f} s")
