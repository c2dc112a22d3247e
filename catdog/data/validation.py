"""Validation: decode every ingested image and check the facts with Great Expectations (the
validate stage runs it on the training data, testset on the curated set).

Per-image facts (format, mode, width, height, bytes, sha256, error) go into a DataFrame. A
GX suite checks each row (label, decodable, size bounds, no conflicting duplicate); rows it
flags are rejected with the reason, the rest are accepted. A second suite checks the
accepted set as a whole (row count, class balance). Data Docs for both land in
data/validated/data_docs/.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from catdog.core.config import LABELS, ValidateParams
from catdog.core.errors import CatdogError
from catdog.core.files import atomic_dir, write_json
from catdog.core.parallel import process_map
from catdog.data import reuse
from catdog.data.drift import ProductionData, compare_with_production
from catdog.data.expectations import GXChecker, quiet_gx
from catdog.data.images import inspect

FACT_COLUMNS = [
    "path",
    "label",
    "format",
    "mode",
    "width",
    "height",
    "pixels",
    "bytes",
    "sha256",
    "error",
    "brightness",
    "contrast",
]
REJECTED_COLUMNS = ["path", "label", "stage", "reason"]


class ValidationError(CatdogError):
    """The data set as a whole is not fit to train on; the message says why and what to do."""


@dataclass(frozen=True)
class ValidationResult:
    accepted: pd.DataFrame
    rejected: pd.DataFrame
    counts: dict


def _decoded_facts(path: str, root: Path, params: ValidateParams) -> dict:
    facts = asdict(inspect(root / path, max_pixels=params.max_pixels, min_side=params.min_side))
    return {**facts, "pixels": facts["width"] * facts["height"] if facts["width"] else None}


def collect_facts(
    manifest: pd.DataFrame,
    root: Path,
    params: ValidateParams,
    cache: reuse.FactsCache | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, int]:
    """One row of facts per manifest row, and how many files were decoded: only those whose content
    `cache` does not know already. bytes and sha256 are the ones ingest recorded."""
    from tqdm import tqdm

    paths, labels, sizes, hashes = (manifest[column].tolist() for column in ("path", "label", "bytes", "sha256"))
    known = {sha: cache.get(sha) for sha in hashes} if cache else {}
    todo = [(path, sha) for path, sha in zip(paths, hashes) if known.get(sha) is None]
    work = partial(_decoded_facts, root=root, params=params)
    with process_map(work, min(params.workers, max(1, len(todo) // 64)), chunksize=32) as decode_all:
        decoded = tqdm(
            decode_all(path for path, _ in todo), total=len(todo), desc="validate", unit="img", disable=not progress
        )
        known.update((sha, facts) for (_, sha), facts in zip(todo, decoded))
    if cache:
        cache.save({sha: known[sha] for sha in hashes})
    rows = [
        {"path": path, "label": label, **known[sha], "bytes": size, "sha256": sha}
        for path, label, size, sha in zip(paths, labels, sizes, hashes)
    ]
    return pd.DataFrame(rows, columns=FACT_COLUMNS), len(todo)


def mark_duplicates(facts: pd.DataFrame) -> pd.DataFrame:
    """Add `conflict` (same content under both labels) and `duplicate_of` (same label, kept once)."""
    facts = facts.sort_values("path", ignore_index=True)
    labels_per_hash = facts.groupby("sha256")["label"].transform("nunique")
    facts["conflict"] = labels_per_hash > 1
    first = facts.groupby(["sha256", "label"])["path"].transform("first")
    facts["duplicate_of"] = first.where((first != facts["path"]) & ~facts["conflict"])
    return facts


# ---------------------------------------------------------------- Great Expectations


def _row_expectations(params: ValidateParams):
    import great_expectations as gx

    E = gx.expectations
    return [
        (E.ExpectColumnValuesToBeInSet(column="label", value_set=list(LABELS)), "label is not cat or dog"),
        (E.ExpectColumnValuesToBeNull(column="error"), None),  # the reason is the decode error itself
        (
            E.ExpectColumnValuesToBeBetween(column="width", min_value=params.min_side),
            f"width below validate.min_side ({params.min_side})",
        ),
        (
            E.ExpectColumnValuesToBeBetween(column="height", min_value=params.min_side),
            f"height below validate.min_side ({params.min_side})",
        ),
        (
            E.ExpectColumnValuesToBeBetween(column="pixels", max_value=params.max_pixels),
            f"more than validate.max_pixels ({params.max_pixels:,})",
        ),
        (
            E.ExpectColumnValuesToBeInSet(column="conflict", value_set=[False]),
            "same image content is labelled both cat and dog",
        ),
    ]


def _dataset_expectations(params: ValidateParams):
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectTableRowCountToBeBetween(min_value=params.min_images),
        E.ExpectColumnMeanToBeBetween(
            column="is_dog", min_value=params.min_class_share, max_value=1 - params.min_class_share
        ),
        E.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=list(LABELS)),
    ]


def validate(
    params: ValidateParams,
    ingested: Path,
    out_dir: Path,
    metrics_file: Path,
    progress: bool = True,
    cache_dir: Path | None = None,
    production: ProductionData | None = None,
) -> ValidationResult:
    """Validate what ingest wrote; with `cache_dir`, files whose content was decoded in an earlier run
    (under the same params and image code) keep those facts. The images new since `production`'s
    training data are checked for drift against it."""
    quiet_gx()
    manifest = pd.read_csv(ingested / "manifest.csv", dtype={"path": str, "sha256": str})
    skipped = pd.read_csv(ingested / "skipped.csv").fillna("")
    facts = mark_duplicates(_facts(manifest, ingested, params, cache_dir, progress))
    copies = facts[facts["duplicate_of"].notna()]
    candidates = facts[facts["duplicate_of"].isna()].drop(columns=["duplicate_of"]).reset_index(drop=True)

    with atomic_dir(out_dir) as tmp:
        checker = GXChecker(tmp / "data_docs", cache_dir / "data-docs-templates" if cache_dir else None)
        expectations = _row_expectations(params)
        results = checker.check("images", candidates, [e for e, _ in expectations])
        reasons = row_failures(results, [reason for _, reason in expectations], candidates)
        accepted, rejected, harmless = rejections(skipped, candidates, copies, reasons)
        rejected.to_csv(tmp / "rejected.csv", index=False)
        failed = [
            r
            for r in checker.check(
                "accepted", accepted.assign(is_dog=accepted["label"] == "dog"), _dataset_expectations(params)
            )
            if not r.success
        ]
        counts = _counts(len(manifest) + len(skipped), accepted, rejected, harmless)
        problems = dataset_problems(params, counts, harmless, failed, accepted)
        drift = compare_with_production(
            accepted, counts["rejected_share"], production, checker.check, params.drift_max_kl
        )
        write_json(tmp / "drift.json", drift.to_dict())
        if drift.drifted and params.fail_on_drift:
            problems.append(f"{drift.summary()} (validate.fail_on_drift is on)")
        checker.build_docs()
        if not problems:  # on failure the report is kept, but no accepted list to train on
            accepted.drop(columns=["conflict"]).to_csv(tmp / "accepted.csv", index=False)
    write_json(metrics_file, counts)
    if problems:
        raise ValidationError(_failure_message(problems, rejected, out_dir))
    if production is not None:
        print(f"validate: {'WARNING: ' if drift.drifted else ''}{drift.summary()}")
    print(
        f"validate: {counts['accepted']} accepted ({counts['accepted_cat']} cat, {counts['accepted_dog']} dog), "
        f"{counts['rejected']} rejected; report: {out_dir / 'data_docs' / 'index.html'}"
    )
    return ValidationResult(accepted, rejected, counts)


def _facts(
    manifest: pd.DataFrame, ingested: Path, params: ValidateParams, cache_dir: Path | None, progress: bool
) -> pd.DataFrame:
    cache = (
        reuse.FactsCache(cache_dir / "validate-facts", reuse.namespace(params.max_pixels, params.min_side))
        if cache_dir
        else None
    )
    facts, decoded = collect_facts(manifest, ingested, params, cache, progress)
    if cache_dir:
        print(f"validate: {reuse.report(cache_dir, 'validate', len(manifest) - decoded, decoded)}")
    return facts


def row_failures(results: list, reasons: list[str | None], candidates: pd.DataFrame) -> dict[str, list[str]]:
    """path -> why, for each image a row expectation flagged (the expectation's reason, or for the
    decodable check the decoder's own error)."""
    errors = dict(zip(candidates["path"], candidates["error"]))
    failures: dict[str, list[str]] = {}
    for result, reason in zip(results, reasons):
        for failed in result.result.get("unexpected_index_list") or []:
            path = failed["path"]
            failures.setdefault(path, []).append(reason or f"cannot decode: {errors[path]}")
    return failures


def rejections(
    skipped: pd.DataFrame, candidates: pd.DataFrame, copies: pd.DataFrame, reasons: dict[str, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(accepted, rejected with stage and reason, how many rejections are harmless copies): what ingest
    skipped, the flagged candidates, and every copy, which shares its original's fate."""
    rejected = [
        {"path": s, "label": "", "stage": "ingest", "reason": r} for s, r in zip(skipped["source"], skipped["reason"])
    ]
    bad = candidates["path"].isin(reasons)
    rejected += [
        {"path": p, "label": lab, "stage": "validate", "reason": "; ".join(reasons[p])}
        for p, lab in zip(candidates.loc[bad, "path"], candidates.loc[bad, "label"])
    ]
    # A copy of an accepted image is harmless (kept once); a copy of a rejected one is just as bad.
    harmless = 0
    for path, label, original in zip(copies["path"], copies["label"], copies["duplicate_of"]):
        if original in reasons:
            reason = "; ".join(reasons[original]) + f" (same content as {original})"
        else:
            reason, harmless = f"duplicate of {original} (kept once)", harmless + 1
        rejected.append({"path": path, "label": label, "stage": "validate", "reason": reason})
    return candidates[~bad].reset_index(drop=True), pd.DataFrame(rejected, columns=REJECTED_COLUMNS), harmless


def dataset_problems(
    params: ValidateParams, counts: dict, harmless: int, failed: list, accepted: pd.DataFrame
) -> list[str]:
    """Why the accepted set as a whole is not fit to train on (empty when it is)."""
    total, invalid = counts["files"], counts["rejected"] - harmless
    problems = []
    if invalid / max(1, total) > params.max_rejected_share:
        problems.append(
            f"{invalid} of {total} files ({invalid / total:.0%}) were rejected, "
            f"over validate.max_rejected_share ({params.max_rejected_share:.0%})"
        )
    return problems + [_describe(r, params, accepted) for r in failed]


def _failure_message(problems: list[str], rejected: pd.DataFrame, out_dir: Path) -> str:
    top = rejected["reason"].value_counts().head(5)
    return (
        "validation failed:\n  - "
        + "\n  - ".join(problems)
        + "\nmost common rejection reasons:\n"
        + "\n".join(f"  {n:5d}  {r}" for r, n in top.items())
        + f"\nSee {out_dir / 'rejected.csv'} and {out_dir / 'data_docs' / 'index.html'}; "
        "fix or remove the bad files, or relax the bounds in params.yaml (validate section)."
    )


def _counts(total: int, accepted: pd.DataFrame, rejected: pd.DataFrame, duplicates: int) -> dict:
    by_label = accepted["label"].value_counts()
    return {
        "files": int(total),
        "accepted": int(len(accepted)),
        "accepted_cat": int(by_label.get("cat", 0)),
        "accepted_dog": int(by_label.get("dog", 0)),
        "rejected": int(len(rejected)),
        "duplicates": int(duplicates),
        "rejected_share": round(len(rejected) / max(1, total), 4),
    }


def _describe(result, params: ValidateParams, accepted: pd.DataFrame) -> str:
    kind = result.expectation_config.type
    counts = accepted["label"].value_counts().to_dict()
    if kind == "expect_table_row_count_to_be_between":
        return f"only {len(accepted)} images accepted, fewer than validate.min_images ({params.min_images})"
    if kind == "expect_column_distinct_values_to_equal_set":
        missing = [label for label in LABELS if counts.get(label, 0) == 0]
        return f"no accepted images of class {', '.join(missing)}"
    if kind == "expect_column_mean_to_be_between":
        return (
            f"classes are imbalanced ({counts}); each must be at least "
            f"validate.min_class_share ({params.min_class_share:.0%}) of the data"
        )
    return f"{kind} failed"
