"""The programs catdog runs (dvc, git, catdog), found beside this interpreter first: the venv's
dvc, not whichever one PATH happens to find."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def program(name: str) -> str:
    """The path of `name` beside this interpreter, or the bare name for PATH to find (git)."""
    local = BIN / name
    return str(local) if local.exists() else name


def tool_env(**extra: str) -> dict:
    """This environment, with this interpreter's tools first on PATH and analytics off."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "GX_ANALYTICS_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        **extra,
    }
