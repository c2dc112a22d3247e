"""`catdog status`: what the next `dvc repro` (or train/nightly run) will do, in plain words.

`dvc status` always lists the source stage as changed (it runs every time, by design); this
lists the source against the manifest of the last run, then the stages DVC sees out of date.
"""

from __future__ import annotations

from catdog.core.config import Params
from catdog.core.paths import ProjectPaths


def describe(params: Params, paths: ProjectPaths) -> str:
    from catdog.data.sources import STAT_CACHE, StatCache, read_manifest, source_name
    from catdog.devtools.report import dvc_status
    from catdog.stages.source import TEST_STAT_CACHE, changes_between, list_source

    source = params.source_path(paths.root)
    listing = list_source(
        source,
        params.ingest,
        StatCache(paths.cache / STAT_CACHE),  # cache not saved
        params.labelled_beside(paths.root),
    )
    last = read_manifest(paths.source_manifest)
    changes = changes_between(last, listing)
    lines = [f"source    {source_name(source)}: {len(listing):,} files"]
    if last is None:
        lines.append("          never listed here: the next run ingests everything")
    elif not changes.count:
        lines.append("          unchanged since the last run")
    elif changes.count < params.ingest.min_changed_files:
        lines.append(
            f"          {changes.summary()} since the last run: fewer than ingest.min_changed_files "
            f"({params.ingest.min_changed_files}), so the next run waits for more"
        )
    else:
        lines.append(f"          {changes.summary()} since the last run: the next run ingests them and retrains")
        lines += _examples(changes)
    test_source = params.test_source_path(paths.root)
    if test_source is not None:
        test_listing = list_source(test_source, params.ingest, StatCache(paths.cache / TEST_STAT_CACHE))
        test_changes = changes_between(read_manifest(paths.test_source_manifest), test_listing)
        lines.append(f"test set  {source_name(test_source)} (evaluate.test_source): {len(test_listing):,} files")
        lines.append(
            "          unchanged since the last run"
            if not test_changes.count
            else f"          {test_changes.summary()} since the last run: the next run scores and gates on the new set"
        )
        lines += _examples(test_changes)

    from catdog.core.lockfile import damage

    problem = damage(paths.lock)
    if problem:
        lines.append(
            f"pipeline  dvc.lock is damaged ({problem}), most likely by a killed run: "
            "`catdog repair-lock` puts back the last sound copy"
        )
        return "\n".join(lines)
    stale = {
        stage: _reasons(entries) for stage, entries in dvc_status(paths.root).items() if entries != ["always changed"]
    }
    if stale:
        lines.append("pipeline  out of date for reasons other than the source:")
        lines += [f"          {stage}: {reason}" for stage, reason in stale.items()]
    elif last is not None and not changes.count:
        lines.append("pipeline  up to date: `dvc repro` has nothing to do")
    return "\n".join(lines)


def _examples(changes) -> list[str]:
    return [
        f"          {kind}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for kind in ("added", "removed", "changed")
        if (names := getattr(changes, kind))
    ]


def _reasons(entries: list) -> str:
    """`dvc status --json` entries of one stage, as 'changed deps: a, b; changed params: train'."""
    reasons = []
    for entry in entries:
        if isinstance(entry, str):
            reasons.append(entry)
            continue
        for kind, changes in entry.items():
            described = [
                f"{name} ({', '.join(f'{key} {what}' for key, what in change.items())})"
                if isinstance(change, dict)
                else f"{name} ({change})"
                for name, change in changes.items()
            ]
            reasons.append(f"{kind}: {'; '.join(described)}")
    return "; ".join(reasons)
