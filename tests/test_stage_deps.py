"""dvc.yaml's code deps cannot go stale: each stage lists exactly the catdog files it runs."""

from pathlib import Path

import yaml

from catdog.devtools.stage_deps import code_of, problems

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_lists_exactly_the_code_it_runs():
    assert problems(ROOT) == []


def test_a_stage_that_does_not_list_code_it_runs_is_caught():
    # The testset stage as dvc.yaml had it before catdog/ was regrouped: its own module, ingest,
    # validate and the image code, but not the shard code it writes its test set with.
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    deps = pipeline["stages"]["testset"]["deps"]
    pipeline["stages"]["testset"]["deps"] = [
        d for d in deps if d not in ("catdog/data/shards.py", "catdog/data/conversion.py")
    ]
    found = problems(ROOT, pipeline)
    assert found == [
        "stage testset: runs catdog/data/conversion.py but its deps do not list it (add it)",
        "stage testset: runs catdog/data/shards.py but its deps do not list it (add it)",
        "(`python -m catdog.devtools.stage_deps --write` writes them)",
    ]


def test_code_imported_inside_a_function_counts_and_no_stage_imports_another():
    assert "catdog/core/plots.py" in code_of(ROOT, "catdog.stages.evaluate")  # imported in evaluate.run
    assert "catdog/data/data_docs.py" in code_of(ROOT, "catdog.stages.validate")  # two rooms away, in a method
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]:
        others = {f for f in code_of(ROOT, f"catdog.stages.{stage}") if f.startswith("catdog/stages/")}
        assert others == {f"catdog/stages/{stage}.py"}
