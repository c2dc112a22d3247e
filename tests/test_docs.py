"""The docs tell the truth about the code: every `catdog` command and option, every params key,
every module run with `python -m` and every repository path named in README.md and docs/*.md
exists (a renamed option or a moved file fails here, not in a newcomer's terminal)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from catdog.cli import build_parser
from catdog.core.config import SECTIONS
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CODE = re.compile(r"`([^`\n]+)`|^    (.+)$", re.M)  # code spans and indented code lines
TRACKED_TOPS = ("catdog/", "docs/", "tests/", "bench/", "flows/", "tasks/", "deployments/", ".ci/", ".github/")
FILE_ENDINGS = {
    "json",
    "zip",
    "csv",
    "yaml",
    "py",
    "md",
    "png",
    "jpg",
    "tar",
    "gz",
    "keras",
    "log",
    "lock",
    "tsv",
    "html",
}
PLACEHOLDER = re.compile(r"[A-Z]{3,}")  # catdog/stages/NAME.py, trials/NNNN: a pattern, not a path
OUTPUTS = ("bench/results/",)  # what a run writes, absent from a clone
TOP_FILES = {"dvc.yaml", "params.yaml", "Makefile", "Dockerfile", "requirements.in", "requirements.lock"}


def snippets(doc: Path) -> list[str]:
    return [a or b for a, b in CODE.findall(doc.read_text())]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    found = {s for a in parser._actions for s in a.option_strings}
    for sub in _subparsers(parser).values():
        found |= _options(sub)
    return found


def catdog_commands(doc: Path) -> list[list[str]]:
    """Each `catdog ...` command line in the doc, as words up to a pipe, comment or redirect."""
    commands = []
    for snippet in snippets(doc):
        for match in re.finditer(r"(?:^|[\s/(])catdog ([^#|>;]*)", snippet):
            words = match.group(1).split()
            if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                commands.append(words)
    return commands


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_catdog_command_and_option_exists(doc):
    commands = _subparsers(build_parser())
    for words in catdog_commands(doc):
        name = words[0]
        assert name in commands, f"{doc.name}: `catdog {' '.join(words)}`: no command {name!r}"
        known = _options(commands[name]) | _options(build_parser())
        for word in words[1:]:
            flag = word.split("=")[0].rstrip(",.:")
            if flag.startswith("--"):
                assert flag in known, f"{doc.name}: `catdog {' '.join(words)}`: {name} has no option {flag}"


def _param_keys(doc: Path) -> set[str]:
    keys = set()
    for snippet in snippets(doc):
        for section, key in re.findall(r"(?<![\w./-])([a-z]+)\.([a-z_]+)\b(?![./(-]\w)", snippet):
            if section in SECTIONS and key not in FILE_ENDINGS:
                keys.add(f"{section}.{key}")
    return keys


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_params_key_exists(doc):
    for key in _param_keys(doc):
        section, name = key.split(".")
        fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
        assert name in fields, f"{doc.name}: `{key}` is not a params key (the {section} section has {sorted(fields)})"


def _paths(doc: Path) -> set[str]:
    found = set()
    for snippet in snippets(doc):
        for word in re.findall(r"[\w./-]+", snippet):
            word = word.rstrip(".,:")
            if (word.startswith(TRACKED_TOPS) or word in TOP_FILES) and not word.startswith(OUTPUTS):
                found.add(word.split(":")[0])
    found |= {
        link for link in re.findall(r"\]\(([^)#\s]+)", doc.read_text()) if not link.startswith(("http", "mailto"))
    }
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_repository_path_exists(doc):
    for path in _paths(doc):
        if PLACEHOLDER.search(path):
            continue
        if path.startswith(TRACKED_TOPS) or path in TOP_FILES:
            target = REPO / path
        else:  # a Markdown link, relative to the doc
            target = doc.parent / path
        assert target.exists() or any(REPO.glob(path)), f"{doc.name}: {path} does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_module_run_with_python_m_exists(doc):
    for snippet in snippets(doc):
        for module in re.findall(r"python -m (catdog[\w.]*)", snippet):
            if module.endswith(".NAME"):
                continue
            file = REPO / (module.replace(".", "/") + ".py")
            assert file.exists() or (REPO / module.replace(".", "/")).is_dir(), f"{doc.name}: no module {module}"
