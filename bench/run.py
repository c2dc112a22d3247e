"""`make bench`: catdog's speed and memory against plain baselines, measured in the same run.

The machine is shared and noisy, so every comparison alternates product and baseline in
pairs (A B A B ...) and quotes medians. Prints a table and writes bench/results/bench.json.

    python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.core.config import ValidateParams
from catdog.devtools.workspace import (
    BIN,
    REPO,
    SHARED_ZIP,
    TINY_BUDGET,
    copy_project,
    set_params,
)
from catdog.devtools.workspace import tool_env as env

RESULTS = REPO / "bench" / "results"
SIZE = 256
MAX_PIXELS = ValidateParams().max_pixels  # a project's default guard, for calls outside one


def cpu() -> dict:
    """The CPU's model name and its native bfloat16 instructions (none: bf16 would be emulated)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {"model_name": model, "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16"})}


# ---------------------------------------------------------------- data


def photos(folder: Path, count: int) -> tuple[Path, str]:
    """`count` JPEGs in class folders: real photos from the shared zip when present, else generated."""
    if folder.exists():
        shutil.rmtree(folder)
    if SHARED_ZIP.exists():
        with zipfile.ZipFile(SHARED_ZIP) as zf:
            names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))
            cats = [n for n in names if "/cat." in n][: count // 2]
            dogs = [n for n in names if "/dog." in n][: count - count // 2]
            for name in cats + dogs:
                target = folder / ("cat" if "/cat." in name else "dog") / Path(name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
        return folder, f"{count} real photos from {SHARED_ZIP.name}"
    rng = np.random.default_rng(0)
    for i in range(count):
        label = "cat" if i % 2 else "dog"
        target = folder / label / f"{label}.{i}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 255, (375 // 5, 500 // 5, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((500, 375), Image.Resampling.BICUBIC).save(target, quality=90)
    return folder, f"{count} generated 500x375 JPEGs (shared zip absent)"


def paired(product, baseline, pairs: int) -> tuple[float, float, list, list]:
    """Run A B A B ...; returns the medians of each (higher is better) and all samples."""
    a, b = [], []
    for _ in range(pairs):
        a.append(product())
        b.append(baseline())
    return statistics.median(a), statistics.median(b), a, b


# ---------------------------------------------------------------- preprocessing


def _plain_pillow(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((SIZE, SIZE)))


def bench_preprocess(files: list[Path], pairs: int) -> dict:
    from functools import partial

    from catdog.core.parallel import process_map
    from catdog.data.conversion import convert_image as _convert

    convert = partial(_convert, root=Path("/"), size=SIZE, resize="stretch", max_pixels=MAX_PIXELS)
    absolute = [str(path.resolve()).lstrip("/") for path in files]

    def product():  # the preprocess stage's own conversion, pool start included
        start = time.perf_counter()
        with process_map(convert, workers=2) as convert_all:
            for _ in convert_all(absolute):
                pass
        return len(files) / (time.perf_counter() - start)

    def baseline():
        start = time.perf_counter()
        for path in files:
            _plain_pillow(path)
        return len(files) / (time.perf_counter() - start)

    def baseline_on_two_processes():  # how far two processes scale on this machine at all
        start = time.perf_counter()
        with process_map(_plain_pillow, workers=2) as convert_all:
            for _ in convert_all(files):
                pass
        return len(files) / (time.perf_counter() - start)

    def one_process():  # catdog's conversion alone, to separate per-image speed from parallelism
        start = time.perf_counter()
        for path in absolute:
            convert(path)
        return len(files) / (time.perf_counter() - start)

    mine, base, a, b = paired(product, baseline, pairs)
    single, base_two, c, d = paired(one_process, baseline_on_two_processes, pairs)
    return {
        "unit": "img/s",
        "catdog": mine,
        "baseline": base,
        "ratio": mine / base,
        "samples": [a, b],
        "catdog_one_process": single,
        "baseline_two_processes": base_two,
        "more_samples": [c, d],
        "per_image_ratio": single / base,
        "two_process_scaling_of_baseline": base_two / base,
        "baseline_is": "plain Pillow loop: open -> convert('L') -> resize(256x256), one process",
        "images": len(files),
        "catdog_is": "the preprocess stage's conversion (JPEG draft decoding) on preprocess.workers=2",
    }


# ---------------------------------------------------------------- training and inference


def _step_timer(batch_size: int):
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

        def images_per_second(self) -> float:
            steady = self.times[1:] or self.times  # the first step includes tracing
            return batch_size / statistics.median(steady)

    return StepTimer()


def _bfloat16_pairs(product, baseline, pairs: int) -> dict:
    """catdog in mixed_bfloat16 against the float32 baseline, where the CPU has native bf16 only."""
    if not cpu()["bf16_flags"]:
        return {
            "skipped": "no avx512_bf16 or amx_bf16 on this CPU: bfloat16 would be emulated, and "
            "train.precision auto picks float32 here"
        }
    mine, base, a, b = paired(product, baseline, pairs)
    return {"catdog": mine, "baseline": base, "ratio": mine / base, "samples": [a, b]}


def bench_train(photo_dir: Path, shards: Path, steps: int, pairs: int) -> dict:
    import keras

    from catdog.data.shards import ShardReader
    from catdog.model.batches import ShardBatches
    from catdog.model.network import build_model

    batch = 32
    reader = ShardReader(shards / "train")

    def product(precision: str = "float32"):
        keras.utils.set_random_seed(0)
        model, timer = build_model(SIZE, precision=precision), _step_timer(batch)
        model.fit(
            ShardBatches(reader, batch, shuffle=True), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer]
        )
        return timer.images_per_second()

    def baseline():
        keras.utils.set_random_seed(0)
        data = keras.utils.image_dataset_from_directory(
            photo_dir,
            label_mode="binary",
            color_mode="grayscale",
            image_size=(SIZE, SIZE),
            batch_size=batch,
            verbose=False,
        )
        model, timer = build_model(SIZE), _step_timer(batch)
        model.fit(data.repeat(), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
        return timer.images_per_second()

    mine, base, a, b = paired(product, baseline, pairs)
    ceiling = 178e9 / 15e9  # OpenBLAS sgemm on 2 cores / FLOP per training image (measured, DEVELOPERS.md)
    return {
        "unit": "img/s",
        "catdog": mine,
        "baseline": base,
        "ratio": mine / base,
        "samples": [a, b],
        "bfloat16": _bfloat16_pairs(lambda: product("mixed_bfloat16"), baseline, pairs),
        "share_of_ceiling": mine / ceiling,
        "steps_timed": steps - 1,
        "batch_size": batch,
        "baseline_is": "model.fit of the same model fed by image_dataset_from_directory from the JPEGs",
        "catdog_is": "the train stage's ShardBatches over uint8 shards",
    }


def bench_input_wait(shards: Path, steps: int, runs: int, sizes=(64, 128, 256)) -> dict:
    """How long the training step waits for its input, measured directly (train.InputWait: when
    each batch was ready vs when its step began) in the train stage's pipeline: shard reads,
    downscaling for the warm-up sizes, augmentation, one prefetching worker. Two epochs of `steps`
    at each size, in each precision this CPU runs natively; the worst of `runs` is quoted."""
    import keras

    from catdog.data.shards import ShardReader
    from catdog.model.batches import ShardBatches, augmentation
    from catdog.model.callbacks import InputWait
    from catdog.model.network import build_model
    from catdog.model.precision import resolve

    reader, batch, results = ShardReader(shards / "train"), 32, {}
    precisions = sorted({"float32", resolve("auto")[0]})
    for precision in precisions:
        for size in sizes:
            shares, step_seconds = [], []
            for _ in range(runs):
                keras.utils.set_random_seed(0)
                model = build_model(size, precision=precision)
                pipeline = ShardBatches(reader, batch, shuffle=True, augment=augmentation(0), image_size=size)
                wait = InputWait(pipeline)
                model.fit(pipeline, steps_per_epoch=steps, epochs=2, callbacks=[wait], verbose=0)
                shares.append(wait.share)
                step_seconds.append(wait.stepped / (wait.steps - 1))
            results[f"{precision} {size}"] = {
                "wait_share": max(shares),
                "step_seconds": statistics.median(step_seconds),
                "samples": shares,
            }
    return {
        "unit": "share of step time",
        "sizes": results,
        "target": "wait share < 5% at every size",
        "precisions": precisions,
    }


def bench_predict(photo_dir: Path, count: int, pairs: int) -> dict:
    import keras

    from catdog.model.network import build_model
    from catdog.serving.predict import predict_files

    model = build_model(SIZE)
    files = sorted(photo_dir.rglob("*.jpg"))[:count]
    subset = photo_dir.parent / "predict-subset"
    if subset.exists():
        shutil.rmtree(subset)
    for path in files:
        (subset / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, subset / path.parent.name / path.name)

    def product():
        start = time.perf_counter()
        predict_files(model, files, SIZE, max_pixels=MAX_PIXELS)
        return len(files) / (time.perf_counter() - start)

    def baseline():
        start = time.perf_counter()
        data = keras.utils.image_dataset_from_directory(
            subset,
            labels=None,
            color_mode="grayscale",
            image_size=(SIZE, SIZE),
            batch_size=32,
            shuffle=False,
            verbose=False,
        )
        model.predict(data, verbose=0)
        return len(files) / (time.perf_counter() - start)

    product()  # warm up both graphs
    baseline()
    mine, base, a, b = paired(product, baseline, pairs)

    def product_bfloat16():
        start = time.perf_counter()
        predict_files(bf16_model, files, SIZE, max_pixels=MAX_PIXELS)
        return len(files) / (time.perf_counter() - start)

    bf16_model = None
    if cpu()["bf16_flags"]:
        from catdog.model.network import with_precision

        bf16_model = with_precision(model, "mixed_bfloat16")
        product_bfloat16()  # warm up
    return {
        "unit": "img/s",
        "catdog": mine,
        "baseline": base,
        "ratio": mine / base,
        "samples": [a, b],
        "bfloat16": _bfloat16_pairs(product_bfloat16, baseline, pairs),
        "baseline_is": "image_dataset_from_directory + model.predict",
        "catdog_is": "catdog.serving.predict.predict_files",
    }


# ---------------------------------------------------------------- DVC and memory


def _project(work: Path, changes: dict) -> Path:
    if work.exists():
        shutil.rmtree(work)  # a previous bench run's project
    project = copy_project(work)
    set_params(project, TINY_BUDGET)
    set_params(project, changes)
    return project


def bench_noop_repro(work: Path, runs: int) -> dict:
    project = _project(work / "noop", {})
    subprocess.run([str(BIN / "dvc"), "repro", "-q"], cwd=project, env=env(), check=True)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(
            [str(BIN / "dvc"), "repro"], cwd=project, env=env(), check=True, capture_output=True, text=True
        ).stdout
        seconds.append(time.perf_counter() - start)
        assert "Running stage" not in out
    return {"unit": "s", "catdog": statistics.median(seconds), "samples": seconds, "target": "<= 3 s"}


def _peak_rss_mb(command: list[str], cwd: Path) -> float:
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *command], cwd=cwd, env=env(), check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def bench_train_memory(work: Path, photo_dir: Path, n: int) -> dict:
    results = {}
    for label, per_class in (("N", n // 2), ("4N", 2 * n)):
        project = _project(
            work / f"memory-{label}",
            {
                "ingest": {"source": str(photo_dir), "max_per_class": per_class},
                "validate": {"min_side": 32},
                "preprocess": {"image_size": SIZE, "workers": 2},
                "train": {"epochs": 1, "batch_size": 32},
            },
        )
        subprocess.run([str(BIN / "dvc"), "repro", "-q", "preprocess"], cwd=project, env=env(), check=True)
        results[label] = _peak_rss_mb([str(BIN / "catdog"), "train"], project)
    return {
        "unit": "MB peak RSS of `catdog train`",
        "N_images": n,
        "N": results["N"],
        "4N": results["4N"],
        "growth": results["4N"] / results["N"] - 1,
        "target": "4N within 10% of N",
    }


# ---------------------------------------------------------------- main


def profile_step() -> dict:
    """bench/profile_step.py with oneDNN on and off (each needs a fresh TensorFlow process)."""
    profiles = {}
    for onednn in ("1", "0"):
        out = RESULTS / f"profile-onednn-{onednn}.json"
        subprocess.run(
            [sys.executable, str(REPO / "bench" / "profile_step.py"), "--json", str(out)],
            env={**env(), "TF_ENABLE_ONEDNN_OPTS": onednn},
            check=True,
            stderr=subprocess.DEVNULL,
        )
        profiles[f"onednn_{onednn}"] = json.loads(out.read_text())
    return profiles


PARTS = (
    "preprocess",
    "incremental",
    "train",
    "input-wait",
    "predict",
    "serve",
    "flood",
    "noop",
    "big-folder",
    "memory",
    "profile",
)
SLOW_PARTS = ("incremental-at-scale",)  # only when named: 20,000 generated photos, about 7 minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer images and pairs (a smoke run)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS + SLOW_PARTS,
        default=PARTS,
        help=f"measure only these parts ({', '.join(SLOW_PARTS)} only when named)",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quick, parts = args.quick, set(args.only)
    work = RESULTS / "work"
    work.mkdir(parents=True, exist_ok=True)
    photo_dir, data_note = photos(work / "photos", 260 if quick else 400)

    started = time.perf_counter()
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            **cpu(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "data": data_note,
    }
    machine = results["machine"]
    print(
        f"cpu: {machine['model_name']}, {machine['cpus']} cores, native bf16: "
        f"{', '.join(machine['bf16_flags']) or 'none (bfloat16 would be emulated)'}",
        flush=True,
    )
    print(f"data: {data_note}", flush=True)
    if "preprocess" in parts:
        all_photos, _ = photos(work / "photos-preprocess", 400 if quick else 2000)
        results["preprocess"] = bench_preprocess(sorted(all_photos.rglob("*.jpg")), pairs=3)
        pre = results["preprocess"]
        print(
            f"preprocess: {pre['ratio']:.2f}x (one process {pre['per_image_ratio']:.2f}x; the plain loop on two "
            f"processes {pre['two_process_scaling_of_baseline']:.2f}x its one-process speed)",
            flush=True,
        )
    if "incremental" in parts:
        from continuous import bench_incremental

        all_photos, _ = photos(work / "photos-incremental", 400 if quick else 2000)
        results["incremental"] = bench_incremental(work, all_photos, added=20, pairs=1 if quick else 5)
        inc = results["incremental"]
        print(
            f"incremental: stage work {inc['work']['speedup']:.1f}x, dvc repro {inc['dvc_repro']['speedup']:.1f}x",
            flush=True,
        )
    if "incremental-at-scale" in parts:
        from continuous import bench_incremental, photo_like_images

        count = 2_000 if quick else 20_000
        generated = photo_like_images(work / f"photo-like-{count}", count)
        results["incremental_at_scale"] = bench_incremental(work, generated, added=20 if quick else 200, pairs=1)
    if "train" in parts or "input-wait" in parts:
        _shards(work, photo_dir)
    if "train" in parts:
        results["train"] = bench_train(photo_dir, work / "shards", steps=3 if quick else 5, pairs=2 if quick else 3)
        print(f"train: {results['train']['ratio']:.2f}x", flush=True)
    if "input-wait" in parts:
        results["input_wait"] = bench_input_wait(work / "shards", steps=4 if quick else 8, runs=2)
        print(
            "input wait share: "
            + ", ".join(f"{size} px {r['wait_share']:.1%}" for size, r in results["input_wait"]["sizes"].items()),
            flush=True,
        )
    if "predict" in parts:
        results["predict"] = bench_predict(photo_dir, 64 if quick else 128, pairs=3)
        print(f"predict: {results['predict']['ratio']:.2f}x", flush=True)
    if "serve" in parts:
        from serve_load import bench_serve

        results["serve"] = bench_serve(photo_dir, work, SIZE, requests=200 if quick else 2000, pairs=2)
        print(f"serve: {results['serve']['ratio']:.2f}x", flush=True)
    if "flood" in parts:
        from serve_load import bench_flood

        results["flood"] = bench_flood(photo_dir, work, SIZE, per_client=2 if quick else 3)
        print(f"flood: server RSS +{results['flood']['growth_mb']:.0f} MB", flush=True)
    if "noop" in parts:
        results["noop_dvc_repro"] = bench_noop_repro(work, runs=3)
    if "big-folder" in parts:
        from continuous import bench_noop_on_big_folder

        results["big_folder"] = bench_noop_on_big_folder(work, 10_000 if quick else 100_000)
        print(f"big folder: no-op dvc repro {results['big_folder']['dvc_repro']:.1f} s", flush=True)
    if "memory" in parts:
        results["train_memory"] = bench_train_memory(work, photo_dir, 64 if quick else 96)
    if "profile" in parts:
        results["step_profile"] = profile_step()
    results["seconds"] = time.perf_counter() - started
    machine["load_average_at_end"] = os.getloadavg()

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2))
    print_table(results)


def _shards(work: Path, photo_dir: Path) -> None:
    from catdog.core.config import IngestParams, PreprocessParams, ValidateParams
    from catdog.data import validation
    from catdog.data.intake import ingest as ingest_run
    from catdog.stages import preprocess

    ingest_run(IngestParams(), work / "ingested", photo_dir, progress=False)
    validation.validate(
        ValidateParams(min_side=32), work / "ingested", work / "validated", work / "validate.json", progress=False
    )
    preprocess.run(
        PreprocessParams(image_size=SIZE, test_fraction=0.05, val_fraction=0.0),
        work / "validated",
        work / "ingested",
        work / "shards",
        progress=False,
        max_pixels=MAX_PIXELS,
    )


def print_table(results: dict) -> None:
    machine = results["machine"]
    print(f"\ncpu: {machine['model_name']}; native bf16: {', '.join(machine['bf16_flags']) or 'none'}")
    print("\n| measurement | catdog | baseline | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for key, target in (("train", ">= 1.5x"), ("predict", ">= 1.5x"), ("preprocess", ">= 3x"), ("serve", ">= 0.8x")):
        if key in results:
            r = results[key]
            print(f"| {key} (img/s, median) | {r['catdog']:.2f} | {r['baseline']:.2f} | {r['ratio']:.2f}x | {target} |")
            bf16, bf16_target = r.get("bfloat16"), {"train": ">= 1.8x", "predict": ">= 3x"}.get(key)
            if bf16 and "skipped" in bf16:
                print(f"| {key} in mixed_bfloat16 vs the float32 baseline | {bf16['skipped']} | | | {bf16_target} |")
            elif bf16:
                print(
                    f"| {key} in mixed_bfloat16 vs the float32 baseline | {bf16['catdog']:.2f} | "
                    f"{bf16['baseline']:.2f} | {bf16['ratio']:.2f}x | {bf16_target} |"
                )
    if "serve" in results:
        s = results["serve"]
        print(
            f"| serve: {s['requests']} requests, {s['clients']} clients: p50 / p99 latency (ms) | "
            f"{s['p50_ms']:.0f} / {s['p99_ms']:.0f} | | | |"
        )
        print(
            f"| serve: errors; server RSS start -> end (MB) | {s['errors']}; {s['rss_start_mb']:.0f} -> "
            f"{s['rss_end_mb']:.0f} | | {s['rss_growth']:+.1%} | none; within 10% |"
        )
        log = s["logging"]
        print(
            f"| serve with the prediction log vs without (img/s, median; pair ratios) | {log['logged']:.2f} | "
            f"{log['not_logged']:.2f} | {log['ratio']:.2f}x ({', '.join(f'{r:.2f}' for r in log['pair_ratios'])})"
            f" | >= 0.95x |"
        )
        sh = s["shadow"]
        print(
            f"| serve with a shadow candidate vs without (img/s, median; pair ratios) | {sh['with_shadow']:.2f} | "
            f"{log['logged']:.2f} | {sh['ratio']:.2f}x ({', '.join(f'{r:.2f}' for r in sh['pair_ratios'])}) | "
            f">= 0.7x |"
        )
        print(
            f"| serve with a shadow: p99 (ms), vs without; share of served images the shadow scored | "
            f"{sh['p99_ms']:.0f} | {s['p99_ms']:.0f} | {sh['p99_ratio']:.2f}x; {sh['scored_share']:.0%} | "
            f"<= 1.5x |"
        )
        w = s["switching"]
        print(
            f"| serve while production switches twice: requests, errors, versions | {w['requests']}, "
            f"{w['errors']}, {' -> '.join(w['versions_in_order'])} | | | no errors |"
        )
    if "flood" in results:
        f = results["flood"]
        print(
            f"| flood: {f['requests']} requests of {f['request_mb']:.0f} MB from 8 clients: answers; failed | "
            f"{f['statuses']}; {f['errors']} | | | 200/503 only; none |"
        )
        print(
            f"| flood: server RSS idle -> peak (MB); one photo at a time meanwhile: ok / told to retry | "
            f"{f['idle_rss_mb']:.0f} -> {f['peak_rss_mb']:.0f}; {f['normal']['ok']} / {f['normal']['retry']} | | "
            f"+{f['growth_mb']:.0f} MB | <= +1,536 MB |"
        )
    for size, r in results.get("input_wait", {}).get("sizes", {}).items():
        print(
            f"| training step at {size}, augmented: share of step time waiting for data (step s) | "
            f"{r['wait_share']:.1%} ({r['step_seconds']:.2f} s) | | | < 5% |"
        )
    for key, what in (("incremental", "photos"), ("incremental_at_scale", "generated photos")):
        if key not in results:
            continue
        inc = results[key]
        for measure, label in (("work", "stage work in one process"), ("dvc_repro", "`dvc repro preprocess`")):
            r = inc[measure]
            print(
                f"| source+ingest+validate+preprocess, {inc['photos'] - inc['added']:,} {what} + {inc['added']} new: "
                f"{label}, incremental vs from scratch (s) | {r['incremental']:.2f} | {r['full']:.2f} | "
                f"{r['speedup']:.1f}x | >= 10x |"
            )
        by_stage = inc["work"]["by_stage"]
        incremental, full = (
            ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in by_stage[kind].items())
            for kind in ("incremental", "full")
        )
        print(f"| of which, stage work per stage (s) | {incremental} | {full} | | |")
    if "noop_dvc_repro" in results:
        print(f"| no-op dvc repro (s) | {results['noop_dvc_repro']['catdog']:.2f} | | | <= 3 s |")
    if "big_folder" in results:
        big = results["big_folder"]
        print(
            f"| no-op on a folder of {big['files']:,} images: dvc status / dvc repro / catdog status (s) | "
            f"{big['dvc_status']:.2f} / {big['dvc_repro']:.2f} / {big['catdog_status']:.2f} | | | each <= 10 s |"
        )
    if "train_memory" in results:
        mem = results["train_memory"]
        print(
            f"| train peak RSS, {mem['N_images']} vs {4 * mem['N_images']} images (MB) | {mem['N']:.0f} -> "
            f"{mem['4N']:.0f} | | {mem['growth']:+.1%} | within 10% |"
        )
    if "preprocess" in results:
        pre = results["preprocess"]
        print(
            f"\npreprocessing: one catdog process {pre['per_image_ratio']:.2f}x the plain loop; the plain loop "
            f"itself gains {pre['two_process_scaling_of_baseline']:.2f}x from a second process"
        )
    for name, profile in results.get("step_profile", {}).items():
        print(
            f"step profile ({name}): {profile['ms_per_image']:.0f} ms/image in the ops above "
            f"({profile['images_per_second_ops_only']:.1f} img/s), numpy sgemm {profile['sgemm_gflops']:.0f} GFLOP/s"
        )
    if "train" in results:
        print(f"training at {results['train']['share_of_ceiling']:.0%} of the ~12 img/s ceiling")
    print(f"load average {machine['load_average_at_start']} -> {machine['load_average_at_end']}")
    print(f"results: {RESULTS / 'bench.json'} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
