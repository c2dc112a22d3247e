"""How a stage runs from the command line: `python -m catdog.stages.NAME` (what dvc.yaml calls) and
`catdog NAME` both parse the same options, read params.yaml once and report a CatdogError as one line."""

from __future__ import annotations

import argparse
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


def guarded(name: str, work: Callable[[], int | None]) -> int:
    try:
        return work() or 0
    except CatdogError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    finally:
        # At exit the interpreter runs the cycle collector over every object the imports made:
        # 1.5 s after Great Expectations was imported. Frozen objects are skipped.
        gc.freeze()
