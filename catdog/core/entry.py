"""How a stage runs from the command line: `python -m catdog.stages.NAME` (what dvc.yaml calls) and
`catdog NAME` both parse the same options, read params.yaml once and report a CatdogError as one line."""

from __future__ import annotations

import argparse
import errno
import gc
import os
import sys
from collections.abc import Callable

from catdog.core.config import Params, load_params
from catdog.core.errors import CatdogError
from catdog.core.paths import ProjectPaths, project

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

Stage = Callable[[Params, ProjectPaths, bool], object]


def stage_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--project", default=".", help="project folder (params.yaml, data/); default: .")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_stage(stage: Stage, project_dir: str, quiet: bool) -> None:
    paths = project(project_dir)
    stage(load_params(paths.params), paths, not quiet)  # params first: a bad key fails before slow imports


def stage_main(name: str, stage: Stage, argv: list[str] | None = None) -> int:
    """The stage as a program: 0 on success, 2 with the error's one line on stderr."""
    args = stage_options(argparse.ArgumentParser(prog=f"python -m catdog.stages.{name}")).parse_args(argv)
    return guarded(f"catdog {name}", lambda: run_stage(stage, args.project, args.quiet))


# Faults of the machine a user can fix, with the fix (errno -> what to do).
MACHINE_FAULTS = {
    errno.ENOSPC: "free space on that disk, then run again",
    errno.EDQUOT: "free space within your disk quota, then run again",
    errno.EROFS: "the file system is read-only: remount it read-write, or use a writable project folder",
    errno.EACCES: "make the folder writable for this user (chmod/chown), then run again",
    errno.EPERM: "make the folder writable for this user (chmod/chown), then run again",
    errno.ENOENT: "the file or folder vanished while the run needed it: put it back, or rerun from the start",
}
DEBUG_VARIABLE = "CATDOG_DEBUG"  # set to 1 for the traceback of a machine fault


def machine_fault(error: OSError) -> str | None:
    """One line naming the path, the cause and the fix; None for an error that is not the machine's."""
    fix = MACHINE_FAULTS.get(error.errno)
    if fix is None:
        return None
    where = f" {error.filename}" if error.filename else ""
    return f"{error.strerror or error}:{where} (fix: {fix}; {DEBUG_VARIABLE}=1 shows the traceback)"


def guarded(name: str, work: Callable[[], int | None]) -> int:
    """Run `work`: a user-fixable error (bad params or data, or a fault of the machine such as a
    full disk) is one line on stderr and exit code 2, not a traceback."""
    try:
        return work() or 0
    except CatdogError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        told = machine_fault(error)
        if told is None or os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"{name}: error: {told}", file=sys.stderr)
        return 2
    finally:
        # At exit the interpreter runs the cycle collector over every object the imports made:
        # 1.5 s after Great Expectations was imported. Frozen objects are skipped.
        gc.freeze()
