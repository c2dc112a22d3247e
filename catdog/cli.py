"""The `catdog` command: each pipeline stage by name (dvc.yaml runs the same code as
`python -m catdog.stages.NAME`); predict, serve, monitor, label and models for the trained model;
sweep to tune it; status, summary, report, check-lock and repair-lock for the pipeline. Heavy
libraries are imported only by the commands that need them, so `catdog models list` answers at once."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from catdog.core.config import load_params
from catdog.core.entry import guarded, run_stage
from catdog.core.paths import ProjectPaths, project

STAGES = ("source", "ingest", "validate", "testset", "preprocess", "train", "evaluate", "register")  # dvc.yaml's


def _paths(args) -> ProjectPaths:
    return project(args.project)


def _params(args):
    return load_params(_paths(args).params)


def _registry(args):
    """The project's model registry (register.registry), or data/registry outside a project."""
    from catdog.registry.store import Registry

    paths = _paths(args)
    return Registry(load_params(paths.params).registry_path(paths.root) if paths.params.exists() else paths.registry)


# ---------------------------------------------------------------- stages


def cmd_stage(args) -> None:
    """`catdog NAME`: the stage as dvc.yaml runs it (`python -m catdog.stages.NAME`)."""
    run_stage(importlib.import_module(f"catdog.stages.{args.command}").stage, args.project, args.quiet)


def cmd_status(args) -> None:
    from catdog.devtools import status

    print(status.describe(_params(args), _paths(args)))


def cmd_repair_lock(args) -> None:
    from catdog.core import lockfile

    print(lockfile.repair(_paths(args)) or "dvc.lock is sound: nothing to repair")


def cmd_summary(args) -> None:
    """What `make run` prints at the end: accuracy, where the model is, how to predict."""

    paths = _paths(args)
    registry = _registry(args)
    decision = json.loads((paths.metrics / "register.json").read_text())
    card = registry.card(decision["version"])
    metrics = card["metrics"]
    production = registry.state()["production"]
    print("\n=== catdog: pipeline finished ===")
    print(
        f"data         {card['params']['ingest']['source']}: "
        f"{card['training'].get('image_size')}px, test images {metrics['test_images']}"
    )
    print(
        f"accuracy     {metrics['accuracy']:.4f} on the test split "
        f"(cat {metrics['accuracy_cat']:.3f}, dog {metrics['accuracy_dog']:.3f}, ROC AUC {metrics['roc_auc']:.3f})"
    )
    print(f"model        {decision['version']} ({card['status']}): {decision['reason']}")
    print(f"             {registry.versions_dir / decision['version'] / 'model.keras'}")
    print(f"production   {production or 'none yet'}")
    print(f"plots        {paths.plots}/ (training_curves, confusion, roc, misclassified .png)")
    print(f"validation   {paths.validated / 'data_docs' / 'index.html'}")
    print("predict      .venv/bin/catdog predict path/to/photo.jpg [more.png ...]")


# ---------------------------------------------------------------- serving and registry


def _max_pixels(args) -> int:
    """validate.max_pixels, the guard the pipeline and the server use: the project's, or outside a
    project (predicting with a bare .keras file) its default."""
    from catdog.core.config import ValidateParams

    paths = _paths(args)
    return load_params(paths.params).validate.max_pixels if paths.params.exists() else ValidateParams().max_pixels


def cmd_predict(args) -> int:
    from catdog.serving.predict import load_for_prediction, predict_files

    max_pixels = _max_pixels(args)
    loaded = load_for_prediction(_registry(args), args.model, args.precision, args.flip_tta)
    results = predict_files(
        loaded.model,
        [Path(p) for p in args.paths],
        loaded.image_size,
        loaded.resize,
        loaded.threshold,
        flip=loaded.flip_tta,
        max_pixels=max_pixels,
    )
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.path}\t{r.label}\tp(dog)={r.p_dog:.4f}" if r.error is None else f"{r.path}\tERROR\t{r.error}")
    return 0 if all(r.error is None for r in results) else 2


def cmd_serve(args) -> None:
    from catdog.core.config import apply_overrides, parse_params, read_raw

    paths = _paths(args)
    flags = {
        f"serve.{name}": value
        for name, value in [
            ("host", args.host),
            ("port", args.port),
            ("model", args.model),
            ("max_batch_size", args.max_batch_size),
            ("max_wait_ms", args.max_wait_ms),
        ]
        if value is not None
    }
    params = parse_params(apply_overrides(read_raw(paths.params), flags), project_dir=paths.root)
    from catdog.monitoring.labelling import LabelSetup
    from catdog.registry.store import Registry
    from catdog.serving import app
    from catdog.serving.auth import TOKEN_VARIABLE
    from catdog.serving.setup import ServeSetup

    labels = LabelSetup(
        paths.serving,
        params.labelled_path(paths.root),
        (paths.source_manifest, paths.ingested / "manifest.csv"),
        params.inbox_path(paths.root),
    )
    app.run(
        ServeSetup(
            Registry(params.registry_path(paths.root)),
            params.serve,
            params.monitor,
            params.validate.max_pixels,
            paths.serving,
            labels,
            os.environ.get(TOKEN_VARIABLE) or None,
        )
    )


def cmd_monitor(args) -> int:
    from catdog.monitoring import monitor

    params, paths = _params(args), _paths(args)
    since = monitor.parse_since(args.since)
    plot_file = Path(args.plot) if args.plot else paths.serving / "monitor.png"
    report = monitor.run(params, paths.serving, _registry(args), since, plot_file)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.text())
        if report.served:
            print(f"plot: {plot_file}")
    return 0


def cmd_label(args) -> int:
    from catdog.monitoring.labelling import export

    paths = _paths(args)
    target = Path(args.export)
    print(f"{export(paths.serving, target)} labels written to {target}")
    return 0


def cmd_models(args) -> None:

    registry = _registry(args)
    if args.action == "list":
        cards = registry.cards()
        if args.json:
            print(json.dumps([_card_summary(c) for c in cards], indent=2))
            return
        if not cards:
            print("no models registered yet: run `dvc repro` (or `make run`)")
        for c in cards:
            s = _card_summary(c)
            print(f"{s['version']}  {s['status']:<20} accuracy {s['accuracy']:.4f}  {s['created']}  {s['reason']}")
    elif args.action == "show":
        from catdog.monitoring.monitor import shadow_comparison

        card = registry.card(args.version)
        shadow = shadow_comparison(_paths(args).serving, card["version"])
        if args.json:
            print(json.dumps({**card, "shadow": shadow.to_dict() if shadow else None}, indent=2))
        else:
            print(_format_card(card) + (f"\nshadow           {shadow.sentence()}" if shadow else ""))
    elif args.action == "promote":
        print(f"{registry.promote(args.version, force=args.force)} is now production")
    elif args.action == "rollback":
        previous, current = registry.rollback()
        print(f"rolled back: {current} is production again (was {previous})")


def _card_summary(card: dict) -> dict:
    return {
        "version": card["version"],
        "status": card["status"],
        "accuracy": card["metrics"]["accuracy"],
        "created": card["created"],
        "reason": card["decision"]["reason"],
    }


def _format_card(card: dict) -> str:
    from catdog.registry.gate import Paired

    m = card["metrics"]
    return "\n".join(
        [
            f"version          {card['version']} ({card['status']})",
            f"created          {card['created']}",
            f"decision         {card['decision']['reason']}",
            f"accuracy         {m['accuracy']:.4f} (cat {m['accuracy_cat']:.3f}, dog {m['accuracy_dog']:.3f})",
            *([f"vs production   {Paired(**card['comparison']).sentence()}"] if card.get("comparison") else []),
            f"precision/recall {m['precision']:.4f} / {m['recall']:.4f}, F1 {m['f1']:.4f}, ROC AUC {m['roc_auc']:.4f}",
            f"data fingerprint {card['data_fingerprint']}",
            f"code revision    {card['code_revision']}",
            f"model sha256     {card['model_sha256']}",
            f"train params     {json.dumps(card['params']['train'])}",
        ]
    )


# ---------------------------------------------------------------- tuning


def cmd_sweep(args) -> int:
    from catdog.tuning import sweep

    params, paths = _params(args), _paths(args)
    name = args.name or args.sweep_name or "default"
    if args.action == "show":
        print(sweep.show(params, paths, name, args.storage))
    elif args.action == "apply":
        print(sweep.apply(params, paths, name, args.storage, exp=args.exp))
    else:
        print(sweep.run(params, paths, name, args.jobs, args.storage, progress=not args.quiet))
    return 0


# ---------------------------------------------------------------- reviewing a change


def cmd_report(args) -> int:
    from catdog.devtools.report import build

    report = build(_paths(args).root, args.base, Path(args.out) if args.out else None, args.tolerance)
    print(report.markdown)
    print(f"<!-- report and {len(report.images)} plots in {report.out_dir} -->")
    return 0


def cmd_check_lock(args) -> int:
    from catdog.devtools.report import stale_outputs

    stale = stale_outputs(_paths(args).root)
    if stale:
        print(
            "the committed metrics are not current for the committed params and code:\n  "
            + "\n  ".join(stale)
            + "\nrun `dvc repro` and commit dvc.lock and data/metrics/",
            file=sys.stderr,
        )
        return 1
    print("dvc.lock and the committed metrics match the committed params and code")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catdog", description=__doc__)
    parser.add_argument("--project", default=".", help="project folder (params.yaml, data/); default: .")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in STAGES:
        stage = commands.add_parser(name, help=f"run the {name} stage (as dvc.yaml does)")
        stage.add_argument("--quiet", action="store_true", help="no progress bars")
        stage.set_defaults(handler=cmd_stage)
    commands.add_parser("summary", help="print what the last run produced").set_defaults(handler=cmd_summary)
    commands.add_parser(
        "status", help="what the next run will do: new, removed or changed source files, and stages out of date"
    ).set_defaults(handler=cmd_status)
    commands.add_parser(
        "repair-lock", help="put back the last sound dvc.lock after a run was killed while DVC wrote it"
    ).set_defaults(handler=cmd_repair_lock)

    predict = commands.add_parser("predict", help="label and p(dog) for image files")
    predict.add_argument("--model", default="production", help="VERSION, 'production', 'latest' or a .keras file")
    predict.add_argument("--json", action="store_true")
    predict.add_argument(
        "--precision",
        default="trained",
        choices=("trained", "auto", "float32", "mixed_bfloat16"),
        help="compute in the precision the model was trained in (default), or this one",
    )
    predict.add_argument(
        "--flip-tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average each image's p(dog) with its mirror image's (default: as the model's run "
        "evaluated, params evaluate.flip_tta)",
    )
    predict.add_argument("paths", nargs="+")
    predict.set_defaults(handler=cmd_predict)

    serve = commands.add_parser(
        "serve", help="HTTP API and drop-a-photo page for the production model (defaults: params.yaml, section serve)"
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; others need CATDOG_SERVE_TOKEN)")
    serve.add_argument("--port", type=int)
    serve.add_argument("--model", help="'production' (follows promotions and rollbacks) or a fixed vNNNN")
    serve.add_argument("--max-batch-size", type=int, help="most images in one model call")
    serve.add_argument("--max-wait-ms", type=float, help="how long the first image of a batch waits for more")
    serve.set_defaults(handler=cmd_serve)

    monitor = commands.add_parser(
        "monitor",
        help="what the served model saw and said: images per version, low-confidence share, drift, online accuracy",
    )
    monitor.add_argument("--since", default="24h", help="a duration (24h, 90m, 7d) or an ISO date; default 24h")
    monitor.add_argument("--json", action="store_true")
    monitor.add_argument("--plot", help="PNG of the same per day (default data/serving/monitor.png)")
    monitor.set_defaults(handler=cmd_monitor)
    label = commands.add_parser("label", help="the labels given in GET /label")
    label.add_argument("--export", required=True, metavar="CSV", help="write every label record to this CSV file")
    label.set_defaults(handler=cmd_label)

    sweep = commands.add_parser(
        "sweep", help="tune train params on the validation split (params.yaml, section sweep): run, show, apply"
    )
    sweep.add_argument("action", nargs="?", default="run", choices=("run", "show", "apply"))
    sweep.add_argument("sweep_name", nargs="?", metavar="NAME", help="the sweep (default: default)")
    sweep.add_argument("--name", help="the same as NAME")
    sweep.add_argument("--jobs", type=int, default=1, help="trials at once on this machine (worker processes)")
    sweep.add_argument(
        "--storage",
        help="the study's database URL, e.g. postgresql://... (default: a journal file in the sweep folder)",
    )
    sweep.add_argument("--exp", action="store_true", help="apply: run the winner as `dvc exp run -n sweep-NAME`")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(handler=cmd_sweep)

    report = commands.add_parser("report", help="Markdown report of metric, param and plot changes vs a git revision")
    report.add_argument("--base", default="HEAD", help="git revision to compare with (default: HEAD)")
    report.add_argument("--out", help="folder for report.md and its PNGs (default: data/report)")
    report.add_argument("--tolerance", type=float, default=0.005, help="accuracy change counted as 'same'")
    report.set_defaults(handler=cmd_report)
    commands.add_parser(
        "check-lock", help="fail if committed metrics are stale for the committed params and code"
    ).set_defaults(handler=cmd_check_lock)

    models = commands.add_parser("models", help="the model registry").add_subparsers(dest="action", required=True)
    for action, help_text in [
        ("list", "all versions"),
        ("show", "one version's card"),
        ("promote", "make a version production"),
        ("rollback", "back to the previous production"),
    ]:
        sub = models.add_parser(action, help=help_text)
        if action in ("show", "promote"):
            sub.add_argument("version", help="vNNNN" + (" or 'production'" if action == "show" else ""))
        if action in ("list", "show"):
            sub.add_argument("--json", action="store_true")
        if action == "promote":
            sub.add_argument(
                "--force",
                metavar="REASON",
                help="promote a version the gate refused; the reason goes into the registry's events log",
            )
        sub.set_defaults(handler=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `catdog` program: run one command, then exit."""
    args = build_parser().parse_args(argv)
    return guarded(f"catdog {args.command}", lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
