"""Which of catdog's files each dvc.yaml stage runs, and whether its `deps` list exactly those.

`python -m catdog.devtools.stage_deps [--write]` checks (and writes) them. A stage runs
`python -m catdog.stages.NAME`: that module and every catdog module it imports,
directly or through others, at the top of a file or inside a function (either may run). A file
missing from the stage's deps is a stale-output bug waiting (DVC would not rerun the stage when it
changes); a file listed that the stage never runs makes DVC rerun it for nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

PACKAGE = "catdog"


def module_file(root: Path, module: str) -> Path | None:
    """The file of a catdog module name, or None when it names no module (a name in a package)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(root: Path, file: Path) -> set[str]:
    """The catdog modules `file` imports, wherever in the file the import stands."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == PACKAGE
        ):
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}"
                for alias in node.names
                if module_file(root, f"{node.module}.{alias.name}")
            }
    return found


def code_of(root: Path, module: str) -> set[str]:
    """Every catdog file (POSIX, relative to `root`) that importing `module` can run, package
    faces (__init__.py) left out: they only name their room (`faces` checks that)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = module_file(root, name)
        if file is not None:
            todo += imported_modules(root, file)
    files = {module_file(root, name) for name in seen}
    return {f.relative_to(root).as_posix() for f in files if f is not None and f.name != "__init__.py"}


def faces(root: Path) -> list[str]:
    """Package __init__.py files that do more than carry a docstring (so would have to be deps)."""
    bad = []
    for init in sorted((root / PACKAGE).rglob("__init__.py")):
        body = ast.parse(init.read_text()).body
        if any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body):
            bad.append(init.relative_to(root).as_posix())
    return bad


def stage_module(cmd: str) -> str | None:
    """`python -m catdog.stages.NAME ...` -> catdog.stages.NAME."""
    words = cmd.split()
    if words[:2] == ["python", "-m"] and len(words) > 2 and words[2].startswith(f"{PACKAGE}.stages."):
        return words[2]
    return None


def problems(root: Path, pipeline: dict | None = None) -> list[str]:
    """What is wrong with the code deps of dvc.yaml (or of `pipeline`, the same read as YAML), one line
    each, saying the fix; empty when right."""
    stages = (pipeline or yaml.safe_load((root / "dvc.yaml").read_text()))["stages"]
    found = [
        f"{face}: a package face must hold only its docstring (move the code into a module)" for face in faces(root)
    ]
    for name, stage in stages.items():
        module = stage_module(stage["cmd"])
        if module is None:
            found.append(f"stage {name}: cmd {stage['cmd']!r} is not `python -m catdog.stages.NAME`")
            continue
        listed = {str(dep).rstrip("/") for dep in stage.get("deps", []) if str(dep).startswith(f"{PACKAGE}/")}
        runs = code_of(root, module)
        found += [f"stage {name}: runs {f} but its deps do not list it (add it)" for f in sorted(runs - listed)]
        found += [f"stage {name}: lists {f} but never runs it (remove it)" for f in sorted(listed - runs)]
    if found:
        found.append("(`python -m catdog.devtools.stage_deps --write` writes them)")
    return found


def rewrite(root: Path) -> None:
    """Write each stage's code deps into dvc.yaml in place (sorted, in place of the old ones), leaving
    its other lines and comments as they are."""
    out, stage, in_deps = [], None, False
    for line in (root / "dvc.yaml").read_text().splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        if in_deps and line.startswith(f"      - {PACKAGE}/"):
            continue
        in_deps = in_deps and line.startswith("      - ")
        out.append(line)
        if line == "    deps:":
            in_deps = True
            out += [f"      - {f}" for f in sorted(code_of(root, f"{PACKAGE}.stages.{stage}"))]
    (root / "dvc.yaml").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        rewrite(Path.cwd())
    trouble = problems(Path.cwd())
    print("\n".join(trouble) or "dvc.yaml's code deps are exactly what each stage runs")
    sys.exit(1 if trouble else 0)
