"""params.yaml, loaded once into typed, validated dataclasses.

Every stage calls `load_params()` before doing any work, so an unknown key, a wrong type
or an out-of-range value fails at once with a message that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from catdog.core.errors import CatdogError

EMBEDDED_SOURCE = "animal-mnist"
LABELS = ("cat", "dog")  # index 1 is the positive class: the model outputs p(dog)


class ParamsError(CatdogError):
    """params.yaml (or an override) is invalid; the message names the key and the fix."""


def _knob(default, *, min=None, max=None, choices=None, help=""):
    return field(default=default, metadata={"min": min, "max": max, "choices": choices, "help": help})


@dataclass(frozen=True)
class IngestParams:
    source: str = _knob(EMBEDDED_SOURCE, help="'animal-mnist', a folder of images, or a .zip/.tar/.tar.gz archive")
    max_per_class: int | None = _knob(None, min=1, help="cap per class (null = all), chosen by content hash")
    max_archive_bytes: int = _knob(8 * 2**30, min=1, help="uncompressed size limit of an archive (zip bombs)")
    max_file_bytes: int = _knob(256 * 2**20, min=1, help="uncompressed size limit of one archive member")
    max_compression_ratio: float = _knob(200.0, min=1.0, help="uncompressed/compressed limit of one member")
    min_changed_files: int = _knob(
        1,
        min=1,
        help="fewest added, removed or changed source files that make a run "
        "ingest and retrain; fewer wait for the next run",
    )


@dataclass(frozen=True)
class ValidateParams:
    min_side: int = _knob(16, min=1, help="smallest accepted width or height in pixels")
    max_pixels: int = _knob(40_000_000, min=1, help="largest accepted width*height (decompression bombs)")
    max_rejected_share: float = _knob(0.2, min=0.0, max=1.0, help="fail when more images than this are rejected")
    min_class_share: float = _knob(0.2, min=0.0, max=0.5, help="each class must be at least this share")
    min_images: int = _knob(10, min=2, help="fewest accepted images to go on with")
    workers: int = _knob(2, min=1, max=64, help="processes that decode images")
    drift_max_kl: float = _knob(
        0.2, min=0.0, help="KL divergence from production's data above which a property drifted"
    )
    fail_on_drift: bool = _knob(False, help="fail validation on drift (by default drift is a warning)")


@dataclass(frozen=True)
class PreprocessParams:
    image_size: int = _knob(256, min=8, max=1024, help="side of the square grayscale model input")
    resize: str = _knob("stretch", choices=("stretch", "pad", "crop"), help="how non-square images become square")
    val_fraction: float = _knob(0.1, min=0.0, max=0.5)
    test_fraction: float = _knob(0.1, min=0.01, max=0.5)
    shard_size: int = _knob(512, min=1, help="images per uint8 shard file")
    workers: int = _knob(2, min=1, max=64, help="processes that decode and resize images")


@dataclass(frozen=True)
class TrainParams:
    epochs: int = _knob(1, min=1, max=10_000)
    batch_size: int = _knob(32, min=1, max=4096)
    learning_rate: float = _knob(0.001, min=1e-7, max=1.0)
    dropout: float = _knob(0.5, min=0.0, max=0.95)
    seed: int = _knob(42, min=0)
    distribute: str = _knob(
        "default",
        choices=("default", "mirrored"),
        help="tf.distribute strategy: one device; mirrored: local GPUs (none with the locked "
        "tensorflow-cpu: then 2 logical CPUs). Training on several machines is not offered (docs/scaling-out.md)",
    )
    # Options for real photos, all off by default so that the spec run stays the spec run.
    augment: bool = _knob(False, help="random flip, rotation, zoom, translation, contrast in the input pipeline")
    early_stopping_patience: int | None = _knob(
        None, min=1, help="stop after this many epochs without a better val_loss and restore the best epoch"
    )
    reduce_lr_patience: int | None = _knob(
        None, min=1, help="halve the learning rate after this many epochs without a better val_loss"
    )
    class_weight: str = _knob("none", choices=("none", "balanced"), help="weight classes by inverse frequency")
    flatten_dense_lr_scale: float = _knob(
        1.0,
        min=1e-4,
        max=1.0,
        help="multiplies Adam's learning rate for the Dense(128) kernel "
        "after Flatten (262,144 inputs); 1.0 = plain Adam",
    )
    budget_images: int | None = _knob(
        None,
        min=1,
        help="work budget: training images seen, an image at a warm-up size counted at its share of the "
        "full size's pixels; the plan's epochs are cut to fit, the same on every host (null = the epochs as given)",
    )
    max_minutes: float | None = _knob(
        None,
        min=0.0,
        help="safety stop: stop at the last epoch that fits in this many minutes, and say so (the model then "
        "depends on the host's speed; size runs with budget_images)",
    )
    center_inputs: bool = _knob(False, help="scale pixels to -1..1 inside the model instead of 0..1")
    warmup_sizes: tuple[int, ...] = _knob(
        (), min=8, help="progressive resizing: image sizes trained before the full size, smallest first, e.g. [64, 128]"
    )
    warmup_epochs: tuple[int, ...] = _knob((), min=1, help="epochs at each of warmup_sizes, e.g. [25, 15]")
    warmup_learning_rate: float | None = _knob(
        None, min=1e-7, max=1.0, help="Adam's rate in the warm-up epochs (null = learning_rate)"
    )
    precision: str = _knob(
        "auto",
        choices=("auto", "float32", "mixed_bfloat16"),
        help="auto: mixed_bfloat16 where the CPU (avx512_bf16, amx_bf16) or GPU has native bfloat16, float32 elsewhere",
    )
    # Levers for time to accuracy (issue 16), each off by default: see docs/photos-recipe.md.
    lr_schedule: str = _knob(
        "constant",
        choices=("constant", "linear", "cosine"),
        help="decay each phase's rate to zero at the end of the plan's last step",
    )
    label_smoothing: float = _knob(
        0.0, min=0.0, max=0.5, help="binary cross-entropy against labels pulled this far towards 0.5"
    )
    ema_momentum: float | None = _knob(
        None,
        min=0.0,
        max=0.9999,
        help="keep an exponential moving average of the weights (e.g. 0.99); the model saved is the average",
    )
    random_resized_crop: float | None = _knob(
        None,
        min=0.05,
        max=1.0,
        help="with augment: random crops of at least this share of the "
        "area, aspect 3/4 to 4/3, resized back (instead of zoom and shift)",
    )


@dataclass(frozen=True)
class EvaluateParams:
    threshold: float = _knob(0.5, min=0.0, max=1.0, help="p(dog) at or above which we say dog")
    batch_size: int = _knob(64, min=1, max=4096)
    misclassified_shown: int = _knob(16, min=0, max=100)
    test_source: str | None = _knob(
        None, help="a fixed, curated test set (folder or archive) never trained on; the gate then judges on it"
    )
    flip_tta: bool = _knob(
        False,
        help="p(dog) of each image averaged with its mirror image's (test-time "
        "augmentation); predict and serve follow the model's own setting",
    )


@dataclass(frozen=True)
class RegisterParams:
    registry: str = _knob(
        "data/registry",
        help="the model registry's folder, relative to params.yaml or absolute: a shared folder (a network "
        "mount) lets other machines predict and serve with the same production model",
    )
    min_accuracy: float = _knob(0.6, min=0.0, max=1.0, help="test accuracy a model needs to become production")
    max_p_value: float = _knob(
        0.05,
        min=0.0,
        max=1.0,
        help="a candidate worse than production on the same test images with McNemar's p below this stays a candidate",
    )


@dataclass(frozen=True)
class ServeParams:
    host: str = _knob("127.0.0.1", help="address to bind; anything but loopback needs CATDOG_SERVE_TOKEN")
    port: int = _knob(8000, min=1, max=65535)
    model: str = _knob("production", help="'production' (follows promotions and rollbacks) or a fixed vNNNN")
    max_batch_size: int = _knob(32, min=1, max=1024, help="most images in one model call")
    max_wait_ms: float = _knob(5.0, min=0.0, max=1000.0, help="how long the first image of a batch waits for more")
    max_upload_bytes: int = _knob(20 * 2**20, min=1, help="largest accepted file (413 above)")
    max_files: int = _knob(16, min=1, max=1000, help="most files in one request")
    reload_seconds: float = _knob(2.0, min=0.1, help="how often the registry is checked for a new production model")
    max_inflight_bytes: int = _knob(
        512 * 2**20,
        min=1,
        help="request bytes admitted at once; more get 503 and Retry-After at once, unread (memory bound)",
    )
    max_queued_images: int = _knob(
        256, min=1, help="images converted and waiting for the model; more get 503 and Retry-After"
    )
    log_predictions: bool = _knob(
        True,
        help="append one record per answered image to data/serving/ (the prediction log that `catdog monitor` reads)",
    )
    keep_inputs: bool = _knob(
        False, help="also keep each uploaded image by content hash (data/serving/inputs/), for the labelling queue"
    )
    shadow: str = _knob(
        "none",
        choices=("none", "candidate"),
        help="candidate: the newest candidate the gate did not "
        "promote also scores every served image, in the "
        "background when the model is idle; its answers go "
        "to the prediction log",
    )
    shadow_share: float = _knob(
        0.15,
        min=0.0,
        max=1.0,
        help="shadow images scored per served image while "
        "requests keep the model busy (the rest wait for idle "
        "time); throughput drops by about as much",
    )
    shadow_backlog: int = _knob(
        1024,
        min=1,
        help="images waiting for the shadow model; beyond it the oldest are "
        "dropped (counted), so the shadow never delays an answer",
    )


@dataclass(frozen=True)
class MonitorParams:
    uncertain_band: float = _knob(
        0.1, min=0.0, max=0.5, help="answers with |p_dog - 0.5| below this are low-confidence"
    )
    inbox: str | None = _knob(
        None, help="a folder of unlabelled photos for the labelling queue (relative to params.yaml)"
    )
    labelled: str = _knob(
        "data/labelled",
        help="where labels go when ingest.source is an archive or the embedded "
        "set: the source stage lists this folder beside it",
    )


SPEC_SPACE = {"train.learning_rate": [0.0001, 0.001, 0.01], "train.batch_size": [16, 32, 64, 128]}
SPEC_MAX_EPOCHS = 50  # the product spec's epochs: 1 to 50


@dataclass(frozen=True)
class SweepParams:
    """`catdog sweep`: the search space and how it is searched (not a pipeline stage)."""

    space: dict = field(
        default_factory=lambda: dict(SPEC_SPACE),
        metadata={
            "help": "train.* params by dotted name: a list of choices, or {low, high, log} for a range (tpe only)"
        },
    )
    method: str = _knob("grid", choices=("grid", "tpe"), help="grid: every combination; tpe: Optuna's TPE sampler")
    max_epochs: int = _knob(
        10, min=1, max=SPEC_MAX_EPOCHS, help="epochs at full size per trial (train.epochs); each keeps its best epoch"
    )
    trials: int | None = _knob(None, min=1, help="trials in all (null: the whole grid; tpe needs a number)")
    max_minutes: float | None = _knob(None, min=0.0, help="wall-clock budget of the whole sweep: no trial starts after")
    objective: str = _knob(
        "val_accuracy", choices=("val_accuracy", "val_loss"), help="the validation metric a trial is judged by"
    )
    pruner: str = _knob(
        "successive_halving",
        choices=("none", "median", "successive_halving", "hyperband"),
        help="stops weak trials early on the per-epoch objective (Optuna's pruners)",
    )
    min_epochs: int = _knob(1, min=1, help="the pruner's first look: no trial is stopped before this many epochs")
    reduction_factor: int = _knob(3, min=2, max=10, help="successive halving keeps the best 1/this at each rung")
    confirm_top: int = _knob(3, min=0, help="the best settings rerun with more seeds before a winner is named")
    confirm_seeds: int = _knob(2, min=0, max=20, help="more seeds per confirmed setting (train.seed + 1, + 2, ...)")
    seed: int = _knob(0, min=0, help="the sampler's seed (the grid's order, TPE's draws)")


@dataclass(frozen=True)
class Params:
    ingest: IngestParams = field(default_factory=IngestParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    serve: ServeParams = field(default_factory=ServeParams)
    monitor: MonitorParams = field(default_factory=MonitorParams)
    sweep: SweepParams = field(default_factory=SweepParams)

    def source_path(self, project_dir: Path) -> Path | None:
        """The ingest source as a path, or None for the embedded data set."""
        return None if self.ingest.source == EMBEDDED_SOURCE else _in_project(self.ingest.source, project_dir)

    def test_source_path(self, project_dir: Path) -> Path | None:
        """evaluate.test_source as a path, or None without a curated test set."""
        return None if self.evaluate.test_source is None else _in_project(self.evaluate.test_source, project_dir)

    def registry_path(self, project_dir: Path) -> Path:
        """register.registry as a path: the model registry's folder."""
        return _in_project(self.register.registry, project_dir)

    def inbox_path(self, project_dir: Path) -> Path | None:
        """monitor.inbox as a path, or None without an inbox."""
        return None if self.monitor.inbox is None else _in_project(self.monitor.inbox, project_dir)

    def labelled_path(self, project_dir: Path) -> Path:
        """Where a label writes its photo: the source folder itself, else monitor.labelled."""
        return self.labelled_beside(project_dir) or self.source_path(project_dir)

    def labelled_beside(self, project_dir: Path) -> Path | None:
        """monitor.labelled where the source stage lists it beside ingest.source (an archive or the
        embedded set, which labels cannot be written into); None for a folder source."""
        source = self.source_path(project_dir)
        return None if source is not None and source.is_dir() else _in_project(self.monitor.labelled, project_dir)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _in_project(value: str, project_dir: Path) -> Path:
    """A path from params.yaml: `~` expanded, relative ones relative to the project folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_dir / path


SECTIONS: dict[str, type] = typing.get_type_hints(Params)  # section name -> its dataclass


def _check_value(key: str, value: Any, hint: Any, meta: dict) -> Any:
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ParamsError(f"{key}: must not be null")
    wanted = [t for t in allowed if t is not type(None)][0]
    if typing.get_origin(wanted) is tuple:  # a YAML list of one item type
        if not isinstance(value, (list, tuple)):
            raise ParamsError(
                f"{key}: expected a list, got {type(value).__name__} {value!r}"
                f" (fix: write it as [..]{'' if not meta.get('help') else ' — ' + meta['help']})"
            )
        item_type = typing.get_args(wanted)[0]
        return tuple(_check_value(f"{key}[{i}]", item, item_type, meta) for i, item in enumerate(value))
    if wanted is dict and not isinstance(value, dict):
        raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__} {value!r} (fix: {meta.get('help')})")
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and wanted is not bool or not isinstance(value, wanted):
        raise ParamsError(
            f"{key}: expected {wanted.__name__}, got {type(value).__name__} {value!r}"
            f" (fix: set {key} to a {wanted.__name__}{'' if not meta.get('help') else ' — ' + meta['help']})"
        )
    if meta.get("choices") and value not in meta["choices"]:
        raise ParamsError(f"{key}: {value!r} is not one of {', '.join(map(repr, meta['choices']))}")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and value < low or high is not None and value > high:
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ParamsError(f"{key}: {value!r} is out of range (fix: use a value {bounds})")
    return value


def _build_section(name: str, raw: Any) -> Any:
    cls = SECTIONS[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{name}: expected a mapping of keys to values, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(
            f"{name}.{unknown[0]}: unknown key (fix: remove it, or use one of {', '.join(sorted(fields))})"
        )
    values = {k: _check_value(f"{name}.{k}", v, hints[k], fields[k].metadata) for k, v in raw.items()}
    return cls(**values)


def parse_params(raw: Any, project_dir: Path | None = None) -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping of sections (ingest, validate, ...)")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown section (fix: use one of {', '.join(SECTIONS)})")
    params = Params(**{name: _build_section(name, raw.get(name)) for name in SECTIONS})
    if params.preprocess.val_fraction + params.preprocess.test_fraction >= 0.9:
        raise ParamsError("preprocess.val_fraction + preprocess.test_fraction: must leave at least 10% to train")
    _check_warmup(params.train, params.preprocess.image_size)
    _check_serve(params.serve)
    _check_levers(params.train)
    _check_sweep(params.sweep)
    if project_dir is not None:
        source = params.source_path(project_dir)
        if source is not None and not source.exists():
            raise ParamsError(
                f"ingest.source: no such file or folder {str(source)!r} (fix: point it at a folder or a "
                f".zip/.tar/.tar.gz archive of cat and dog images, or use '{EMBEDDED_SOURCE}')"
            )
    return params


def _check_warmup(train: TrainParams, image_size: int) -> None:
    """Each size must divide the next one, the full size last, and be a multiple of 8 (three 2x2
    pools), so that the feature map grows by a whole factor from phase to phase."""
    if len(train.warmup_sizes) != len(train.warmup_epochs):
        raise ParamsError(
            f"train.warmup_epochs: {len(train.warmup_epochs)} value(s) for {len(train.warmup_sizes)} "
            f"warm-up size(s) (fix: give one epoch count per size in train.warmup_sizes)"
        )
    sizes = [*train.warmup_sizes, image_size]
    for size, following in zip(sizes, sizes[1:]):
        if size >= following or following % size or size % 8:
            raise ParamsError(
                f"train.warmup_sizes: {list(train.warmup_sizes)} do not fit preprocess.image_size "
                f"{image_size} (fix: multiples of 8, smallest first, each dividing the next and the "
                f"full size, e.g. [{image_size // 4}, {image_size // 2}])"
            )


def _check_serve(serve: ServeParams) -> None:
    largest = serve.max_files * serve.max_upload_bytes
    if serve.max_inflight_bytes < largest:
        raise ParamsError(
            f"serve.max_inflight_bytes: {serve.max_inflight_bytes:,} is less than the largest request "
            f"allowed ({serve.max_files} files of {serve.max_upload_bytes:,} bytes = {largest:,}), "
            f"which could then never be answered (fix: raise it to at least {largest:,}, or lower "
            "serve.max_files or serve.max_upload_bytes)"
        )


def _check_levers(train: TrainParams) -> None:
    """Options that would silently undo each other."""
    if train.lr_schedule != "constant" and train.reduce_lr_patience:
        raise ParamsError(
            "train.lr_schedule: a decay to zero and train.reduce_lr_patience both set the learning "
            "rate (fix: set train.reduce_lr_patience to null, or train.lr_schedule to constant)"
        )
    if train.ema_momentum is not None and train.early_stopping_patience:
        raise ParamsError(
            "train.ema_momentum: early stopping would restore a best epoch's raw weights over the "
            "average (fix: set train.early_stopping_patience to null, or train.ema_momentum to null)"
        )
    if train.random_resized_crop is not None and not train.augment:
        raise ParamsError("train.random_resized_crop: is part of the augmentation (fix: set train.augment to true)")


def _check_sweep(sweep: SweepParams) -> None:
    """The space names train params that exist, with choices or ranges each of them accepts."""
    if not sweep.space:
        raise ParamsError("sweep.space: is empty (fix: name at least one train.* param, e.g. train.learning_rate)")
    fields = {f.name: f for f in dataclasses.fields(TrainParams)}
    hints = typing.get_type_hints(TrainParams)
    for key, values in sweep.space.items():
        section, _, name = str(key).partition(".")
        where = f"sweep.space.{key}"
        if section != "train" or name not in fields:
            raise ParamsError(f"{where}: not a train param (fix: use one of train.{', train.'.join(sorted(fields))})")
        if name == "epochs":
            raise ParamsError(f"{where}: epochs are each trial's budget, not an axis (fix: set sweep.max_epochs)")
        if isinstance(values, dict):
            _check_range(where, values, hints[name], fields[name].metadata, sweep.method)
        elif isinstance(values, list) and values:
            for i, value in enumerate(values):
                if isinstance(value, (list, dict)):
                    raise ParamsError(f"{where}[{i}]: choices are single values, got {value!r}")
                _check_value(f"{where}[{i}]", value, hints[name], fields[name].metadata)
        else:
            raise ParamsError(f"{where}: {values!r} is not a non-empty list of choices or a {{low, high}} range")
    if sweep.method == "tpe" and sweep.trials is None and sweep.max_minutes is None:
        raise ParamsError("sweep.trials: tpe needs a budget (fix: set sweep.trials or sweep.max_minutes)")


def _check_range(where: str, values: dict, hint: Any, meta: dict, method: str) -> None:
    unknown = sorted(set(values) - {"low", "high", "log"})
    if unknown or "low" not in values or "high" not in values:
        raise ParamsError(f"{where}: a range is {{low: .., high: .., log: true|false}}, got {values!r}")
    if method == "grid":
        raise ParamsError(f"{where}: a grid needs a list of choices (fix: list them, or set sweep.method: tpe)")
    low, high = (_check_value(f"{where}.{end}", values[end], hint, meta) for end in ("low", "high"))
    if not isinstance(low, (int, float)) or isinstance(low, bool) or not low < high:
        raise ParamsError(f"{where}: low {low!r} must be a number below high {high!r}")
    if values.get("log") and low <= 0:
        raise ParamsError(f"{where}: a log range needs low > 0, got {low!r}")


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Return a copy of raw params with dotted-key overrides (`{"train.epochs": 3}`) applied."""
    result = {section: dict(values or {}) for section, values in (raw or {}).items()}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ParamsError(f"{key}: unknown key (fix: use 'section.key', sections: {', '.join(SECTIONS)})")
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        if name not in known:
            raise ParamsError(f"{key}: unknown key (fix: use one of {', '.join(sorted(known))})")
        result.setdefault(section, {})[name] = value
    return result


def write_overrides(path: Path | str, overrides: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Validate dotted-key overrides against the whole params file, then write them into it
    (comments kept) so that dvc.lock records what the run used. Returns {key: (old, new)}."""
    from ruamel.yaml import YAML

    from catdog.core.files import atomic_path

    path = Path(path)
    raw = read_raw(path)
    parse_params(apply_overrides(raw, overrides), project_dir=path.resolve().parent)
    changes = {
        key: ((raw.get(key.split(".")[0]) or {}).get(key.split(".", 1)[1]), value) for key, value in overrides.items()
    }
    changes = {key: (old, new) for key, (old, new) in changes.items() if old != new}
    if changes:
        yaml_rt = YAML()
        document = yaml_rt.load(path.read_text())
        for key in changes:
            section, name = key.split(".", 1)
            document.setdefault(section, {})[name] = overrides[key]
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            yaml_rt.dump(document, f)
    return changes


def read_raw(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (fix: run from the project folder, or pass --project DIR)") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    return parse_params(read_raw(path), project_dir=path.resolve().parent)
