"""Prefect tasks: one thin wrapper per DVC stage.

Each task runs `dvc --wait-for-lock repro --single-item <stage>`, so dvc.yaml stays the one
definition of the pipeline and unchanged stages are skipped. DVC's and the stage's output
stream into the Prefect run log. Failures that a retry can fix (a killed process, a crash)
are retried with backoff; a user-fixable failure (bad params, failed validation: the catdog
CLI exits 2) fails at once with its message.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from prefect import get_run_logger, task

from catdog.core.tools import program, tool_env

USER_ERROR_EXIT = 2  # catdog's exit code for bad params or bad data (see catdog/core/entry.py)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class StageFailed(Exception):
    def __init__(self, stage: str, message: str, transient: bool):
        super().__init__(f"stage {stage!r} failed: {message}")
        self.transient = transient


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    ran: bool
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def stage_outputs(project_dir: Path, stage: str) -> list[str]:
    """What dvc.yaml says the stage writes (outs, metrics, plots)."""
    spec = yaml.safe_load((project_dir / "dvc.yaml").read_text())["stages"][stage]
    entries = [e for kind in ("outs", "metrics", "plots") for e in spec.get(kind, [])]
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def dvc_command(*args: str) -> list[str]:
    """`dvc ARGS...` with the dvc that lives beside this interpreter."""
    return [program("dvc"), *args]


def stage_env() -> dict:
    return tool_env(TQDM_MININTERVAL="15")  # dvc and catdog live beside this interpreter


def _is_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except StageFailed as failure:
        return failure.transient
    except Exception:
        return True
    return False


def failure_reason(stage: str, lines: list[str], code: int) -> str:
    """The stage's own error message (all its lines) if it printed one, else DVC's last error."""
    start = next((i for i, line in enumerate(lines) if line.startswith(f"catdog {stage}: error:")), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("ERROR:")), len(lines))
        return "\n".join(lines[start:end])
    return next((line for line in reversed(lines) if "ERROR" in line), f"dvc exited with {code}")


@task(
    name="dvc-stage", task_run_name="{stage}", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_is_transient
)
def run_stage(stage: str, project_dir: str) -> dict:
    """Reproduce one DVC stage (skipped when unchanged); returns whether it ran and its outputs."""
    logger = get_run_logger()
    project = Path(project_dir)
    command = dvc_command("--wait-for-lock", "repro", "--single-item", stage)
    process = subprocess.Popen(
        command, cwd=project, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines = []
    for raw in process.stdout:
        for line in _ANSI.sub("", raw).replace("\r", "\n").splitlines():
            if line.strip():
                lines.append(line)
                logger.info(line)
    code = process.wait()
    output = "\n".join(lines)
    if code != 0:
        user_error = f"exited with {USER_ERROR_EXIT}" in output or "dvc.yaml' validation failed" in output
        raise StageFailed(stage, failure_reason(stage, lines, code), transient=not user_error)
    ran = f"Running stage '{stage}'" in output
    logger.info(f"stage {stage}: {'ran' if ran else 'unchanged, skipped'}")
    return StageOutcome(stage, ran, stage_outputs(project, stage)).to_dict()
