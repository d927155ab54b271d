"""`kres train`: build a ResNet, train it with tf.data + tf.distribute, keep a resumable run directory.

``train(TrainConfig(...), DataConfig(...))`` does the whole job:

1. resolve the recipe (options left as None take the data's recipe, see ``keras_resnet.recipes``);
2. pick the strategy and precision, validate the batch split and load the data (every user error
   is raised here, before the run directory is touched);
3. create or resume ``runs/NAME`` and train in segments of whole epochs (a frozen-backbone phase
   first when asked, and the rest of a half-finished epoch when resuming from a mid-epoch checkpoint);
4. write ``last.keras`` / ``best.keras`` rebuilt under float32, ``meta.json``, ``history.csv``,
   ``curves.png`` and TensorBoard logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

from keras_resnet import _compat, fileio, runlock, runs
from keras_resnet import callbacks as cb
from keras_resnet.data import DataConfig, check_class_names, check_split_names, data_name, load_datasets
from keras_resnet.distribute import Placement, check_global_batch, cpu_precision_note, make_placement, resolve_precision
from keras_resnet.errors import KresError, counted, first_five
from keras_resnet.meta import ModelMeta, card_path, find_meta, generic_labels
from keras_resnet.model import resnet
from keras_resnet.optim import COMPILED_UPDATE_MIN_STEPS, OPTIMIZERS, Schedule, make_optimizer, scaled_learning_rate
from keras_resnet.quant_debug import STATS_KEY, record_input_stats
from keras_resnet.rebuild import float32_clone, is_float32
from keras_resnet.recipes import Recipe, recipe_for
from keras_resnet.specs import (
    BELOW_ONE,
    MAX_EPOCHS,
    MAX_LR,
    MAX_SEED,
    MAX_WEIGHT_DECAY,
    MIN_IMAGE_SIZE,
    STEMS,
    depth_spec,
    largest_activation,
    variant_spec,
)

HEAD_LAYERS = ("top_dropout", "predictions")  # what --freeze-backbone-epochs leaves trainable
DEFAULT_CHECKPOINT_STEPS = 1000
# Below this many images per replica, batch statistics are too noisy to re-estimate pretrained BN statistics:
# fine-tuning from --weights keeps them frozen (BN in inference mode) unless --train-bn says otherwise.
SMALL_BATCH_PER_REPLICA = 16
WARMUP_SHARE = 0.1  # the most of a run the recipe's warmup takes
# Options that may change between the runs of one run directory without making it another run.
_NOT_IDENTITY = ("output", "resume", "qat_epochs", "checkpoint_steps")
# Options added after runs were made: what a run whose config.json lacks them trained with.
_BEFORE_ADDED = {"ema": 0.0}


@dataclass
class TrainConfig:
    """Everything ``kres train`` takes besides the data; None means "from the data's recipe"."""

    depth: int = 18
    variant: str = "v1.5"
    stem: str | None = None
    epochs: int | None = None
    batch_size: int | None = None  # GLOBAL batch, split across replicas
    image_size: int | None = None
    precision: str = "auto"
    xla: bool | None = None  # None: on for GPUs, TPUs and the JAX backend; off for TensorFlow on CPU
    optimizer: str | None = None  # "sgd" (Nesterov) or "adamw"
    lr: float | None = None  # base learning rate for a global batch of 256 (scaled linearly)
    warmup_epochs: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    ema: float | None = None  # momentum of the validated and saved weight average, every step; 0: off
    dropout: float = 0.0
    weights: str | None = None  # "imagenet" or a weights file
    freeze_backbone_epochs: int = 0
    freeze_bn: bool | None = None  # None: frozen when fine-tuning from weights on < 16 images per replica
    qat_epochs: int = 0
    output: str | None = None  # run directory; default runs/<model>-<data>-<time>
    resume: bool = False
    seed: int = 0
    tpu: bool = False
    checkpoint_steps: int | None = None  # also checkpoint every N steps inside an epoch (default 1000 for long ones)
    steps_per_execution: int | None = None  # None: 1 on CPU, up to 8 on GPU, up to 64 on TPU


@dataclass
class TrainResult:
    run_dir: Path
    best_model: Path
    last_model: Path
    metrics: dict  # the last epoch's row of history.csv
    best_val_accuracy: float
    epochs: int
    steps: int  # training steps run, over all the processes of a resumed run: epochs x steps per epoch
    iterations: int  # the optimizer's step counter (fewer than steps only where float16 loss scaling skipped)
    train_seconds: float = 0.0  # wall time of model.fit in this process
    qat_model: Path | None = None
    history: list[dict] = field(default_factory=list)


def resolve(cfg: TrainConfig, data: DataConfig) -> tuple[TrainConfig, DataConfig, Recipe]:
    """Fill every None from the recipe and validate the values; raises KresError before any work."""
    depth_spec(cfg.depth)
    variant_spec(cfg.variant)
    recipe = recipe_for(data.dataset, data.data_dir)
    optimizer = cfg.optimizer or recipe.optimizer
    if optimizer not in OPTIMIZERS:
        raise KresError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    epochs = recipe.epochs if cfg.epochs is None else cfg.epochs
    cfg = dataclasses.replace(
        cfg,
        stem=cfg.stem or recipe.stem,
        epochs=epochs,
        batch_size=recipe.batch_size if cfg.batch_size is None else cfg.batch_size,
        image_size=recipe.image_size if cfg.image_size is None else cfg.image_size,
        optimizer=optimizer,
        lr=recipe.base_lr[optimizer] if cfg.lr is None else cfg.lr,
        warmup_epochs=recipe_warmup(recipe, epochs) if cfg.warmup_epochs is None else cfg.warmup_epochs,
        weight_decay=recipe.weight_decay[optimizer] if cfg.weight_decay is None else cfg.weight_decay,
        label_smoothing=recipe.label_smoothing if cfg.label_smoothing is None else cfg.label_smoothing,
        ema=recipe.ema if cfg.ema is None else cfg.ema,
    )
    _check_finite(cfg, data)
    if cfg.stem not in STEMS:
        raise KresError(f"unknown stem {cfg.stem!r}: choose one of {', '.join(STEMS)}")
    if not 1 <= cfg.epochs <= MAX_EPOCHS:
        raise KresError(f"--epochs must be 1 to {MAX_EPOCHS:,}, got {cfg.epochs}")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise KresError(f"--seed must be 0 to {MAX_SEED:,}, got {cfg.seed}")
    if cfg.image_size < MIN_IMAGE_SIZE:
        raise KresError(f"--image-size {cfg.image_size} is too small: use {MIN_IMAGE_SIZE} px or more")
    if cfg.batch_size < 1:
        raise KresError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    _check_bounds(cfg)
    if cfg.warmup_epochs >= cfg.epochs:  # the rate would rise all run and never decay
        raise KresError(f"--warmup-epochs {cfg.warmup_epochs:g} is the whole run of --epochs {cfg.epochs}: use a "
                        f"warmup shorter than the run (e.g. {round(WARMUP_SHARE * cfg.epochs, 6):g})")
    if not 0 <= cfg.freeze_backbone_epochs < cfg.epochs:
        raise KresError(f"--freeze-backbone-epochs {cfg.freeze_backbone_epochs} must be less than "
                        f"--epochs {cfg.epochs}, so the whole network trains at least one epoch")
    if cfg.qat_epochs < 0:
        raise KresError(f"--qat-epochs must not be negative, got {cfg.qat_epochs}")
    data = dataclasses.replace(data, image_size=cfg.image_size, batch_size=cfg.batch_size, seed=cfg.seed)
    cfg, data = _absolute(cfg, data)
    return cfg, data, recipe


def _check_bounds(cfg: TrainConfig) -> None:
    """The ranges of the optimizer's options, as kres train checks them while parsing (specs.py says why)."""
    if not 0 < cfg.lr <= MAX_LR:
        raise KresError(f"--lr must be above 0 and at most {MAX_LR:,}, got {cfg.lr}")
    if not 0 <= cfg.label_smoothing <= BELOW_ONE:
        raise KresError(f"--label-smoothing must be 0 to {BELOW_ONE}, got {cfg.label_smoothing}")
    if not 0 <= cfg.ema <= BELOW_ONE:
        raise KresError(f"--ema is a momentum of 0 to {BELOW_ONE} (0 turns the average off), got {cfg.ema}")
    if not 0 <= cfg.weight_decay <= MAX_WEIGHT_DECAY:
        raise KresError(f"--weight-decay must be 0 to {MAX_WEIGHT_DECAY:g}, got {cfg.weight_decay}")
    if cfg.warmup_epochs < 0:
        raise KresError(f"--warmup-epochs must not be negative, got {cfg.warmup_epochs}")


# The paths a run's config.json keeps: (part, field). Saved absolute, they name the same files from any working
# directory (--resume, export's calibration images, evaluate); a run saved before kept them as typed.
_PATHS = (("train", "weights"), ("data", "data_dir"), ("data", "tfds_dir"))


def _absolute_path(field: str, value: str | None) -> str | None:
    if field != "weights" or value is None:
        return fileio.absolute(value)
    if value == "imagenet":
        return value
    from keras_resnet.weights import in_folder  # file formats: imported only when weights are given

    # a run folder: its best.keras, which the config records. Links are followed: --weights runs/latest named the
    # new run itself once it became runs/latest, so --resume could not start it (nor the same command: see
    # _as_resolved_before)
    path = fileio.absolute(value)
    return in_folder(path if "://" in path else os.path.realpath(path))


def _absolute(cfg: TrainConfig, data: DataConfig) -> tuple[TrainConfig, DataConfig]:
    """``cfg`` and ``data`` with the paths of ``_PATHS`` absolute."""
    return (dataclasses.replace(cfg, weights=_absolute_path("weights", cfg.weights)),
            dataclasses.replace(data, data_dir=_absolute_path("data_dir", data.data_dir),
                                tfds_dir=_absolute_path("tfds_dir", data.tfds_dir)))


def _check_memory(cfg: TrainConfig, placement: Placement, precision: str) -> None:
    """A KresError where one activation of a CPU replica's batch (:func:`keras_resnet.specs.largest_activation`)
    alone needs more than the machine's memory: --image-size 4096 ran minutes without a line, then TensorFlow
    crashed (a segmentation fault, no error). GPUs and TPUs say they ran out (``errors.out_of_memory``)."""
    if placement.accelerator != "cpu":
        return
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): TensorFlow's own error, as before
        return
    values, shape = largest_activation(cfg.depth, cfg.stem, cfg.image_size)
    images = cfg.batch_size // placement.replicas
    need = images * values * (2 if precision.startswith("mixed") else 4)
    if need > memory:
        raise KresError(f"at --image-size {cfg.image_size} and --batch-size {cfg.batch_size}, one activation of "
                        f"ResNet-{cfg.depth} ({counted(images, 'image')} of {shape}) alone needs "
                        f"{need / 2**30:,.1f} GiB, more than this machine's {memory / 2**30:.1f} GiB: lower "
                        "--batch-size or --image-size")


def recipe_warmup(recipe: Recipe, epochs: int) -> float:
    """The recipe's warmup, at most a tenth of the run (as in the recipes themselves): 5 warmup epochs in a run of
    2 ended it at the peak rate, never decaying."""
    return min(recipe.warmup_epochs, round(WARMUP_SHARE * epochs, 6))  # 0.1 * 3 is 0.30000000000000004


def _warmup_begun_with(run_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """The recipe's warmup a run in ``run_dir`` began with: one begun before ``recipe_warmup`` capped it keeps
    its own, so the same command still resumes it."""
    saved = ((runs.read_config(run_dir) or {}).get("train") or {}).get("warmup_epochs")
    if isinstance(saved, (int, float)) and not isinstance(saved, bool):
        return dataclasses.replace(cfg, warmup_epochs=saved)
    return cfg


def _check_weights(cfg: TrainConfig) -> None:
    """The --weights a new run starts from, and that the freezing options have some: without, they froze a random
    network without a word (BN frozen from random weights normalizes nothing: its statistics are 0 and 1)."""
    if cfg.weights is not None:
        from keras_resnet.weights import check_weights  # file formats: imported only when weights are given

        check_weights(cfg.weights, depth=cfg.depth, variant=cfg.variant)
        return
    if cfg.freeze_backbone_epochs:
        raise KresError(f"--freeze-backbone-epochs {cfg.freeze_backbone_epochs} trains only the classifier on the "
                        "backbone --weights give, and none are given (it would stay random): add --weights (imagenet, "
                        "a run folder or a model file), or leave it out")
    if cfg.freeze_bn:
        raise KresError("--freeze-bn keeps the BN statistics --weights give, and none are given (from random weights "
                        "BN would normalize nothing): add --weights, or leave --freeze-bn out")


def resolve_xla(xla: bool | None, placement: Placement) -> bool:
    """``--xla/--no-xla``, or by default on for GPUs, TPUs and the JAX backend, off for TensorFlow on a CPU."""
    if xla is not None:
        return xla
    return placement.accelerator in ("gpu", "tpu") or keras.backend.backend() == "jax"


def _as_resolved_before(run_dir: Path, cfg: TrainConfig, precision: str, xla: bool) -> TrainConfig:
    """The run's own ``--precision`` and ``--xla`` where the typed ones come to what the run resolved them to:
    ``--precision float32`` (or ``--no-xla``) restated for a run that left them to kres, which chose float32 (XLA
    off) here, is that run; it was refused as "other settings ('auto' -> 'float32')". And its own ``--weights``
    where the typed ones are in the run itself: ``--weights runs/latest``, rerun once the run became runs/latest."""
    saved = runs.read_config(run_dir) or {}
    typed, resolved = saved.get("train") or {}, saved.get("resolved") or {}
    now = {"precision": precision, "xla": xla}
    same = {key: typed[key] for key in now
            if key in typed and typed[key] != getattr(cfg, key) and key in resolved and resolved[key] == now[key]}
    if typed.get("weights") not in (None, cfg.weights) and _inside(cfg.weights, run_dir):
        same["weights"] = typed["weights"]
    return dataclasses.replace(cfg, **same)


def _inside(path: str | None, folder: Path) -> bool:
    """Whether ``path`` (a local file or folder) is ``folder`` or in it."""
    if path is None or "://" in path:
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def _check_finite(cfg: TrainConfig, data: DataConfig) -> None:
    """NaN slips through every range check (each comparison is False) and trains to a NaN model."""
    numbers = {"--lr": cfg.lr, "--warmup-epochs": cfg.warmup_epochs, "--weight-decay": cfg.weight_decay,
               "--label-smoothing": cfg.label_smoothing, "dropout": cfg.dropout, "--val-split": data.val_split,
               "--mixup": data.mixup_alpha, "--cutmix": data.cutmix_alpha}
    for option, value in numbers.items():
        if not math.isfinite(value):
            raise KresError(f"{option} must be a finite number, got {value}")


@dataclass
class _Plan:
    """What ``train`` decided from the config, the placement and the data, before it builds anything."""

    precision: str
    xla: bool
    steps_per_epoch: int
    total_steps: int
    peak_lr: float
    schedule: Schedule
    execution: int  # steps per execution
    checkpoint_steps: int | None
    freeze_bn: bool
    num_classes: int
    compiled_update: bool  # the optimizer's update as one XLA computation (``optim.compile_update``)


@runlock.releasing
def train(cfg: TrainConfig, data: DataConfig, *, stream=None, on_run_dir=lambda _run_dir: None) -> TrainResult:
    """Train (or resume, or find finished) the run described by ``cfg`` and ``data`` (see the module doc);
    ``on_run_dir`` gets the run folder once it is chosen, so that an interrupted caller can name it."""
    stream = stream or sys.stderr
    typed = cfg  # as typed: a None setting is the recipe's
    cfg, data, recipe = resolve(cfg, data)
    placement = make_placement(cfg.tpu)
    check_global_batch(cfg.batch_size, placement.replicas, recipe_batch=typed.batch_size is None)
    precision = resolve_precision(cfg.precision, placement)
    _check_memory(cfg, placement, precision)
    run_dir = _run_dir(cfg, data)
    on_run_dir(run_dir)
    _check_data_folder(run_dir, data)
    if placement.is_chief:  # the other workers of a multi-worker run write elsewhere
        runlock.acquire(run_dir, stream)
    if typed.warmup_epochs is None:
        cfg = _warmup_begun_with(run_dir, cfg)
    cfg = _as_resolved_before(run_dir, cfg, precision, xla := resolve_xla(cfg.xla, placement))
    state = _check_existing_run(run_dir, cfg, data)
    # A checkpoint holds every weight: a run that has one needs --weights no more (the file may have moved).
    checkpointed = bool(state and (state.get("weights") or state.get("complete")))
    if checkpointed:
        cfg = _weights_begun_with(run_dir, cfg)
    if not checkpointed:
        _check_weights(cfg)
    datasets = _load_data(cfg, data, run_dir, state, recipe_batch=typed.batch_size is None)
    if state is not None and placement.is_chief:
        _say_moved_data(stream, run_dir, data)  # before its config.json records the new place
    plan = _plan(cfg, placement, datasets, precision, xla)
    if state and state.get("complete") and state.get("steps") == plan.total_steps:
        _say(stream, f"{run_dir} already finished {epochs_text(cfg.epochs)} ({plan.total_steps} steps); nothing to "
                     "train")
        return _finish(cfg, data, run_dir, placement, train_seconds=0.0, stream=stream)
    # Every worker of a multi-worker run saves (the collectives need all of them); only the chief keeps files.
    write_dir = run_dir if placement.is_chief else Path(tempfile.mkdtemp(prefix=f"kres-{placement.worker_index}-"))
    fileio.ensure_writable_dir(write_dir)
    model, optimizer, load_note = _build_model(cfg, plan, placement, None if checkpointed else cfg.weights)
    if placement.is_chief:
        _write_run_files(run_dir, cfg, data, recipe, plan, placement, datasets, model)
    start, weights_file = runs.checkpoint_weights(run_dir, stream) if state else (0, None)
    metrics = runs.checkpoint_metrics(run_dir, start) if start else None
    _say(stream, _banner(cfg, data, datasets, placement, precision, plan, run_dir, start))
    _say_notes(stream, cfg, plan, placement, precision, load_note)
    if placement.is_chief:  # after the banner: 200 images at the run's size (7.5 s at 1024 px, 2 cores)
        record_input_stats(run_dir, data)  # what int8 calibration images should look like, checked at export
    callbacks, checkpointer, exporter = _callbacks(cfg, plan, run_dir, write_dir, start, model, stream)
    began = time.perf_counter()
    with _saying_what_is_kept(run_dir):
        step = _fit_phases(model, optimizer, cfg, plan, placement, datasets, callbacks, checkpointer, start,
                           weights_file, metrics)
        train_seconds = time.perf_counter() - began
        exporter.save(write_dir / runs.LAST_MODEL)
        checkpointer.save(complete=True)
    if not placement.is_chief:
        shutil.rmtree(write_dir, ignore_errors=True)
        return TrainResult(run_dir, run_dir / runs.BEST_MODEL, run_dir / runs.LAST_MODEL, {}, math.nan, cfg.epochs,
                           step, cb.iterations_of(model), train_seconds)
    return _finish(cfg, data, run_dir, placement, train_seconds=train_seconds, stream=stream)


def _check_data_folder(run_dir: Path, data: DataConfig) -> None:
    """What a data folder's listing refuses, said before the run folder is made. Split folders under other names
    only for a new run: a run begun on such a folder reads it as it did."""
    if data.data_dir is None:
        return
    if not runs.is_run_dir(run_dir):
        check_split_names(data.data_dir)
    check_class_names(data.data_dir)


@contextlib.contextmanager
def _saying_what_is_kept(run_dir: Path):
    """A full disk, an unwritable folder or validation images gone while training say what to mend, then that the
    same command resumes from the checkpoint kept: said only of the checkpoint's own write, the others (best.keras,
    history, the logs) said "choose another output path", which starts the run over; images gone were a TensorFlow
    traceback."""
    try:
        yield
    except fileio.OutOfSpace as err:
        raise fileio.OutOfSpace(_then_resume(run_dir, str(err), "free some space")) from None
    except fileio.CannotWrite as err:
        raise fileio.CannotWrite(_then_resume(run_dir, str(err), f"make {run_dir} writable")) from None
    except Exception as err:
        if _CARDINALITY_FAILED not in str(err):
            raise
        raise KresError(_then_resume(run_dir, f"validation images of {run_dir.name} were removed or became unreadable "
                                     "while it trained (fewer batches than were counted at the start)",
                                     "restore them")) from None


_CARDINALITY_FAILED = "Input dataset was expected to contain"  # tf.data's assert_cardinality (_with_cardinality)
_ELSEWHERE = ("; free some space or choose another output path", "; choose another output path")


def _then_resume(run_dir: Path, problem: str, mend: str) -> str:
    """``problem`` (its advice to choose another output path, which starts over, left out where a checkpoint is
    kept), then how to go on from the checkpoint kept."""
    state = runs.read_checkpoint_state(run_dir) or {}
    if not state.get("weights"):
        return f"{problem}; no checkpoint was written yet"
    for advice in _ELSEWHERE:
        problem = problem.removesuffix(advice)
    return f"{problem}; {mend}, then rerun the same command to resume from the checkpoint of step {state['steps']}"


def _load_data(cfg: TrainConfig, data: DataConfig, run_dir: Path, state: dict | None, *, recipe_batch: bool):
    # Before the pipelines are built: tf.data's seeded shuffles also read TensorFlow's global seed, so the
    # same --seed gives the same batches whatever ran earlier in this process.
    keras.utils.set_random_seed(cfg.seed)
    datasets = load_datasets(data, recipe_batch=recipe_batch)
    if state is not None:
        _check_same_images(run_dir, datasets)
    return datasets


def _plan(cfg: TrainConfig, placement: Placement, datasets, precision: str, xla: bool) -> _Plan:
    steps_per_epoch = datasets.num_train // cfg.batch_size  # at least 1: load_datasets rejects a larger batch
    total_steps = steps_per_epoch * cfg.epochs
    peak_lr = scaled_learning_rate(cfg.lr, cfg.batch_size)
    schedule = Schedule(peak_lr, round(cfg.warmup_epochs * steps_per_epoch), total_steps)
    execution = cfg.steps_per_execution or _steps_per_execution(placement, steps_per_epoch)
    # Every epoch's end always; inside long epochs too, so a kill loses at most ~1000 steps by default.
    checkpoint_steps = cfg.checkpoint_steps or (DEFAULT_CHECKPOINT_STEPS if steps_per_epoch > 1000 else None)
    if checkpoint_steps:
        checkpoint_steps = max(execution, checkpoint_steps - checkpoint_steps % execution)
    # JAX always compiles with XLA (its trainer runs eagerly without it); TensorFlow gains from it on accelerators.
    return _Plan(precision=precision, xla=xla,
                 steps_per_epoch=steps_per_epoch, total_steps=total_steps, peak_lr=peak_lr, schedule=schedule,
                 execution=execution, checkpoint_steps=checkpoint_steps,
                 freeze_bn=frozen_bn(cfg, placement.replicas), num_classes=len(datasets.class_names),
                 # From the run's total, not the steps left, so a resumed run updates as it began (a run begun by kres
                 # before 2026-12-07 compiled it at any length: resumed, a short one goes on with Keras's own).
                 compiled_update=placement.kind == "default" and total_steps >= COMPILED_UPDATE_MIN_STEPS)


def _build_model(cfg: TrainConfig, plan: _Plan, placement: Placement, weights: str | None):
    """The model under the run's precision policy, starting from ``weights``, its optimizer, and the line the
    loading has for the banner's notes ("" where none: it was printed before the banner); the global policy is put
    back after."""
    previous_policy = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(plan.precision)
    notes: list[str] = []
    try:
        with placement.scope():
            model = resnet(cfg.depth, num_classes=plan.num_classes,
                           input_shape=(cfg.image_size, cfg.image_size, 3), variant=cfg.variant, stem=cfg.stem,
                           dropout=cfg.dropout)
            if weights is not None:
                from keras_resnet.weights import load_pretrained  # file formats: imported only when weights are given

                load_pretrained(model, weights, depth=cfg.depth, variant=cfg.variant, include_top=True,
                                builder=resnet, say=notes.append)
            optimizer = make_optimizer(cfg.optimizer, plan.schedule.build(), cfg.weight_decay, model, ema=cfg.ema,
                                       compiled_update=plan.compiled_update)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model, optimizer, "\n".join(notes)


def _write_run_files(run_dir: Path, cfg: TrainConfig, data: DataConfig, recipe: Recipe, plan: _Plan,
                     placement: Placement, datasets, model: keras.Model) -> None:
    """config.json, labels.txt, meta.json and the runs/latest link, before the first step."""
    fileio.write_json(run_dir / runs.CONFIG_FILE, {
        "train": asdict(cfg), "data": asdict(data), "recipe": recipe.name,
        "resolved": {"precision": plan.precision, "xla": plan.xla, "strategy": placement.kind,
                     "replicas": placement.replicas, "steps_per_epoch": plan.steps_per_epoch,
                     "total_steps": plan.total_steps, "peak_lr": plan.peak_lr,
                     "warmup_steps": plan.schedule.warmup_steps, "steps_per_execution": plan.execution,
                     "num_train": datasets.num_train, "num_val": datasets.num_val,
                     "skipped_files": datasets.skipped_files, "skipped": datasets.skipped_listed(),
                     "keras_backend": keras.backend.backend(),
                     "freeze_bn": plan.freeze_bn, "compiled_update": plan.compiled_update},
    })
    runs.write_labels(run_dir, datasets.class_names)
    _point_latest(run_dir)
    meta = ModelMeta.from_model(model, labels=datasets.class_names)
    if stats := _recorded_stats(run_dir):  # a resumed run's, kept until they are measured again after the banner
        meta.extra[STATS_KEY] = stats
    meta.save(run_dir)


def _recorded_stats(run_dir: Path) -> dict | None:
    """The training images' statistics that ``run_dir``'s meta.json records (a resumed run's), if any."""
    try:
        return ModelMeta.load(run_dir).extra.get(STATS_KEY)
    except (KresError, OSError):  # none yet, or unreadable: measured again after the banner
        return None


def _say_notes(stream, cfg: TrainConfig, plan: _Plan, placement: Placement, precision: str,
               load_note: str = "") -> None:
    """What the banner's lines are followed by: the classifier --weights left as initialised, frozen BN
    statistics, a precision slow on this CPU, and an --ema too long for the run."""
    if load_note:
        _say(stream, load_note)
    if plan.freeze_bn:
        why = " is too few to re-estimate them" if cfg.freeze_bn is None else ""
        _say(stream, f"BN statistics stay frozen ({cfg.batch_size // placement.replicas} images per replica{why}; "
                     "--train-bn updates them)")
    if note := cpu_precision_note(precision, placement):
        _say(stream, note)
    if note := _ema_note(cfg.ema, plan.total_steps, cfg.freeze_backbone_epochs * plan.steps_per_epoch):
        _say(stream, note)


def _ema_note(ema: float, total_steps: int, frozen_steps: int = 0) -> str | None:
    """One line where --ema averages over more steps than the run has (``1/(1-ema)``, rounded as the note says
    it): the saved weights were then nearly those of the first step, without a word. Keras's average has no warm-up
    or bias correction: its first step copies the weights and each later one keeps ``ema`` of the average, so the
    first step's weights still make up ``ema ** (total_steps - 1)`` of it at the end. A backbone frozen for its
    first ``frozen_steps`` keeps its starting weights in the average until it trains: ``ema ** unfrozen steps``."""
    steps_averaged = round(1 / (1 - ema)) if ema else 0  # 10 for 0.9 (1/(1-0.9) is 9.999999999999998)
    steps = total_steps - frozen_steps  # the steps that move the weights the note speaks of
    if (steps < 2 and not frozen_steps) or steps >= steps_averaged:
        return None
    share = min(100 * ema ** (steps if frozen_steps else steps - 1), 99.9)
    decades = int(math.log10(steps))  # the longest average of the form 0.9, 0.99, ... the run is as long as
    fix = f"use --ema {1 - 10.0 ** -decades:.{decades}f} or below" if decades else "turn it off with --ema 0"
    said = (f"trains its backbone for {steps:,} (after {frozen_steps:,} frozen): the backbone weights it validates "
            f"and saves are still {share:.1f}% those it started from" if frozen_steps else
            f"has {steps:,}: the weights it validates and saves are still {share:.1f}% those of its first step")
    return (f"note: --ema {ema} averages over about {steps_averaged:,} steps and this run {said}; {fix} for a run "
            "this short")


def _callbacks(cfg: TrainConfig, plan: _Plan, run_dir: Path, write_dir: Path, start: int, model: keras.Model,
               stream) -> tuple[list, cb.Checkpointer, _Float32Exporter]:
    """The divergence check, progress, history (the rows up to the resumed epoch), best model, TensorBoard, the
    checkpointer and the epoch's line, in that order at an epoch's end: the checkpoint, once saved, implies the
    epoch's history row and best model, and the epoch's line comes once all are saved (printed first, it was on the
    terminal for the 1-2 s of the saves, when a Ctrl-C lost the epoch it showed). Also the saver of the models."""
    rows = [r for r in cb.read_history(run_dir / runs.HISTORY_FILE) if r["epoch"] <= start // plan.steps_per_epoch]
    lr_now = plan.schedule.build()
    checkpointer = cb.Checkpointer(write_dir / runs.CHECKPOINT_DIR, plan.steps_per_epoch,
                                   every_steps=plan.checkpoint_steps)
    exporter = _Float32Exporter(model, steps=lambda: checkpointer.step)
    bar = cb.ProgressBar(cfg.epochs, cfg.batch_size, stream=stream)
    return [
        cb.FiniteLoss(checkpointer, cfg.lr),  # first: a diverged step reaches no later callback
        *([cb.ValidateAverages()] if cfg.ema else []),  # before anything reads the validation logs
        bar,  # the live bar, and the epoch's images/s and time into the logs
        cb.EpochEndHeld([  # saved whole once validated: a Ctrl-C meanwhile waits for the last of these
            *([cb.RunFolderKept(run_dir / runs.CONFIG_FILE)] if write_dir == run_dir else []),  # the chief's
            cb.HistoryWriter(write_dir, rows, learning_rate=lambda: float(lr_now(cb.iterations_of(model) - 1))),
            cb.BestModelSaver(write_dir / runs.BEST_MODEL, exporter.save,
                              best=max((r.get("val_accuracy", -math.inf) for r in rows), default=-math.inf)),
            cb.TensorBoardScalars(write_dir / runs.LOGS_DIR, stream),
            checkpointer,
            bar.line_after(),
        ]),
    ], checkpointer, exporter


def _fit_phases(model: keras.Model, optimizer, cfg: TrainConfig, plan: _Plan, placement: Placement, datasets,
                callbacks: list, checkpointer: cb.Checkpointer, start: int, weights_file: Path | None,
                metrics: list | None = None) -> int:
    """Train from global step ``start`` to the end in segments of whole epochs (the frozen-backbone phase, and
    the rest of a half-finished epoch, are segments of their own); returns the last step. ``metrics``: the
    running means of the half-finished epoch's first steps (its checkpoint's), which its rest goes on with."""
    val_data = _with_cardinality(datasets.val, datasets.num_val, cfg.batch_size)
    if placement.kind == "multi_worker":
        val_data = _unsharded(val_data)
    step, frozen = start, None
    if start == plan.total_steps:  # killed after the last step's checkpoint, before last.keras: restore it
        _compile(model, optimizer, cfg, plan.num_classes, plan.xla, plan.execution, placement)
        model.load_weights(weights_file)
        checkpointer.set_model(model)
        checkpointer.start_fit(start)
    while step < plan.total_steps:
        epoch, offset = divmod(step, plan.steps_per_epoch)
        want_frozen = epoch < cfg.freeze_backbone_epochs
        if want_frozen != frozen:
            # Trainability is read when the step function is built: a phase change means a new compile.
            _set_backbone_trainable(model, not want_frozen, freeze_bn=plan.freeze_bn)
            _compile(model, optimizer, cfg, plan.num_classes, plan.xla, plan.execution, placement)
            frozen = want_frozen
            if weights_file is not None:  # after compile, so the optimizer's slots and step counter load too
                model.load_weights(weights_file)
                weights_file = None
        end = epoch + 1 if offset else (cfg.freeze_backbone_epochs if want_frozen else cfg.epochs)
        checkpointer.start_fit(step)
        train_data = datasets.train_from(epoch, offset)  # the batches an uninterrupted run sees from here
        resumed = [cb.RestoreMetrics(metrics)] if offset and metrics is not None else []
        with _fit_scope(model, datasets, placement), _compat.fused_batch_norm():
            model.fit(train_data, validation_data=val_data, initial_epoch=epoch, epochs=end,
                      steps_per_epoch=plan.steps_per_epoch - offset, callbacks=resumed + callbacks, verbose=0,
                      shuffle=False)
        metrics = None
        step = checkpointer.step
    return step


def _fit_scope(model: keras.Model, datasets, placement: Placement):
    """The Keras workarounds a multi-worker fit needs (see ``_compat.multi_worker_fit``), for that fit only."""
    if placement.kind != "multi_worker":
        return contextlib.nullcontext()
    return _compat.multi_worker_fit(model, datasets.train.element_spec, placement.scope)


def _finish(cfg: TrainConfig, data: DataConfig, run_dir: Path, placement: Placement, *, train_seconds: float,
            stream) -> TrainResult:
    rows = cb.read_history(run_dir / runs.HISTORY_FILE)
    state = runs.read_checkpoint_state(run_dir) or {}
    best = max((r.get("val_accuracy", -math.inf) for r in rows), default=math.nan)
    result = TrainResult(run_dir, run_dir / runs.BEST_MODEL, run_dir / runs.LAST_MODEL, rows[-1] if rows else {},
                         best, len(rows), int(state.get("steps", 0)), int(state.get("iterations", 0)), train_seconds,
                         history=rows)
    if placement.is_chief:
        meta = ModelMeta.load(run_dir)
        meta.extra.update({"dataset": data.dataset or ("folder" if data.data_dir else "digits"),
                           "val_accuracy": result.metrics.get("val_accuracy"), "best_val_accuracy": _json_number(best),
                           "epochs": result.epochs})
        meta.save(run_dir)
        if rows and not cb.curves_drawn_after_history(run_dir):  # drawn at the fit's end; 0.25 s to draw again
            cb.plot_curves(rows, run_dir / runs.CURVES_FILE)
    trained = f"trained {train_seconds:.0f} s; " if train_seconds else ""
    _say(stream, f"{trained}best val top-1 {best:.4f}, last {result.metrics.get('val_accuracy', math.nan):.4f}; "
                 f"models in {run_dir}")
    if cfg.qat_epochs and placement.is_chief:
        from keras_resnet.qat import finetune_line, made_before, quantization_aware_finetune  # tf_keras: when asked

        if made := made_before(run_dir / "qat", result.best_model, cfg.qat_epochs):
            _say(stream, f"quantization-aware model: {made} (made before, from this {result.best_model.name})")
            result.qat_model = made
        else:
            _say(stream, f"{finetune_line(cfg.qat_epochs)} from {result.best_model.name}")
            result.qat_model = quantization_aware_finetune(result.best_model, data, cfg.qat_epochs,
                                                           run_dir / "qat", stream=stream)
            _say(stream, f"quantization-aware model: {result.qat_model}")
        card = qat_card(result.qat_model, result.best_model, data, again=made is None)
        if line := _qat_accuracy_line(card, result.best_model.name):
            _say(stream, line)
    return result


def qat_card(model: Path, source: Path, data: DataConfig, again: bool = True) -> Path:
    """``model_qat_int8.card.json`` beside the QAT model (what an app needs), as ``kres export`` writes beside its
    files, with its top-1 on the run's held-out images against the float32 ``source`` it was fine-tuned from;
    with ``again`` False (a model made before), kept where it is there already with its accuracy."""
    import json

    from keras_resnet.export import QAT_NAME, heldout_agreement, write_card
    from keras_resnet.quantize import describe_tflite

    card = card_path(model)
    if again or not card.is_file() or not json.loads(card.read_text()).get("accuracy"):  # one made before kres had it
        content = model.read_bytes()
        entry, meta = describe_tflite(model, content), ModelMeta.load(model.parent)
        if agreement := heldout_agreement(source, model, content, data, meta):
            entry["agreement"] = agreement
        write_card(model, content, entry, meta, data, QAT_NAME)
    return card


def _qat_accuracy_line(card: Path, source_name: str) -> str | None:
    """The QAT model's held-out top-1 as its card gives it, beside the model it was fine-tuned from's."""
    import json

    accuracy = json.loads(card.read_text()).get("accuracy")
    if not accuracy:
        return None
    return (f"int8 top-1 {accuracy['top1']:.4f} on {counted(accuracy['images'], 'held-out image')} "
            f"({source_name} {accuracy['keras_top1']:.4f})")


class _Float32Exporter:
    """Saves the training model's weights into the same graph under float32, without optimizer, every layer
    trainable, so ``best.keras``/``last.keras`` load anywhere (CPU, float32 policy, no custom objects).

    Where the training model is that already (float32, every layer trainable, no weight average to save instead of
    its weights), its own layers are saved, through a functional model over them; otherwise a float32 rebuild of the
    graph (``keras_resnet.rebuild``), made once, with the weights copied in: 0.4-0.5 s more of ResNet-18's first save.

    A save after as many training steps as the one before (``last.keras`` after a last epoch that was the best)
    copies that file: the weights are the same, and a save took 0.4 s, the copy 0.03 s (AMD EPYC Zen 3).
    ``steps`` counts every step trained: a float16 step skipped for overflow leaves the optimizer's count, not the
    BN statistics, as they were."""

    def __init__(self, model: keras.Model, steps: Callable[[], int]):
        self.model = model
        self.steps = steps
        self.clone = None
        self.saved: tuple[int, Path] | None = None  # the step count and path of the last save

    def save(self, path: Path) -> None:
        step = self.steps()
        if self.saved is not None and self.saved[0] == step and self.saved[1] != path and self.saved[1].is_file():
            with fileio.atomic_path(path, need=self.saved[1].stat().st_size) as tmp:
                shutil.copyfile(self.saved[1], tmp)
            return
        saving = self._saving_model()
        with fileio.atomic_path(path, need=fileio.with_headers(cb.variables_bytes(saving.weights))) as tmp:
            saving.save(tmp)
        self.saved = (step, path)

    def _saving_model(self) -> keras.Model:
        model = self.model
        if not cb.weight_averages(model) and is_float32(model) and all(layer.trainable for layer in model.layers):
            return keras.Model(model.input, model.output, name=model.name)  # uncompiled: no optimizer saved
        if self.clone is None:  # built once: every layer trainable, as a fresh model would be
            self.clone = float32_clone(model, trainable=True)
        self.clone.set_weights(cb.saved_weights(model))  # the moving averages under --ema
        return self.clone


def _with_cardinality(dataset, examples: int, batch_size: int):
    """Tell Keras how many validation batches there are, so its first pass does not end in a warning."""
    import tensorflow as tf

    return dataset.apply(tf.data.experimental.assert_cardinality(math.ceil(examples / batch_size)))


def _unsharded(dataset):
    """Every worker evaluates the whole validation set: data-sharding a finite set leaves the workers with
    uneven batch counts, which ends the evaluation early."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def frozen_bn(cfg: TrainConfig, replicas: int) -> bool:
    """Whether BN keeps its (pretrained) statistics all through training: ``--freeze-bn/--train-bn``, or by
    default when fine-tuning from weights with fewer than ``SMALL_BATCH_PER_REPLICA`` images per replica."""
    if cfg.freeze_bn is not None:
        return cfg.freeze_bn
    return cfg.weights is not None and cfg.batch_size // replicas < SMALL_BATCH_PER_REPLICA


def _set_backbone_trainable(model: keras.Model, trainable: bool, *, freeze_bn: bool = False) -> None:
    """Freeze everything but the head, or unfreeze it; frozen BN layers run in inference mode (Keras 3
    semantics), so with ``freeze_bn`` BN layers stay frozen and keep their statistics either way."""
    for layer in model.layers:
        if layer.name not in HEAD_LAYERS:
            layer.trainable = trainable and not (freeze_bn and isinstance(layer, keras.layers.BatchNormalization))


def training_metrics(num_classes: int) -> list[keras.metrics.Metric]:
    """Top-1 and, past 5 classes, top-5 accuracy."""
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
    return metrics


def _compile(model: keras.Model, optimizer, cfg: TrainConfig, num_classes: int, xla: bool, execution: int,
             placement: Placement) -> None:
    """Cross-entropy on one-hot (or mixed) labels, and ``training_metrics``."""
    with placement.scope():
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                      metrics=training_metrics(num_classes), jit_compile=bool(xla), steps_per_execution=execution)


def _steps_per_execution(placement: Placement, steps_per_epoch: int) -> int:
    """Several steps per call where Python overhead matters (GPU, TPU); a divisor of the epoch, so
    checkpoints and resumed epochs land on whole executions."""
    target = {"tpu": 64, "gpu": 8}.get(placement.accelerator, 1)
    return max(d for d in range(1, min(target, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def _data_name(data: DataConfig) -> str:
    return data_name(data).replace("/", "-").replace(":", "-")


def _run_dir(cfg: TrainConfig, data: DataConfig) -> Path:
    if cfg.output:
        return Path(cfg.output)
    latest = Path("runs") / runs.LATEST
    if cfg.resume:
        if not latest.exists():
            raise KresError("--resume without --output continues runs/latest, which does not exist; "
                            "pass --output runs/NAME")
        return latest.resolve()
    # a name pasted into a shell as printed: no spaces, quotes or other characters a shell takes apart
    name = re.sub(r"[^\w.-]+", "-", _data_name(data)).strip("-") or "data"
    base = Path("runs") / f"resnet{cfg.depth}-{name}-{_now()}"
    # two runs started in the same second took the same folder, and the second was refused as "other settings"
    taken = itertools.chain([base], (Path(f"{base}-{n}") for n in itertools.count(2)))
    return next(path for path in taken if not path.exists())


def _now() -> str:
    """The start time a default run folder is named by: 20261206-101500."""
    return time.strftime("%Y%m%d-%H%M%S")


def resumed(cfg: TrainConfig, data: DataConfig, given: set[str]) -> tuple[TrainConfig, DataConfig]:
    """``--resume``: the settings the run in ``cfg.output`` (default runs/latest) started with, read from its
    config.json, except the fields named in ``given`` (the options typed): those stay, and ``train`` refuses the
    run when they differ from the saved ones. So ``kres train --resume --output RUN`` needs no other option."""
    run_dir = _run_dir(dataclasses.replace(cfg, resume=True), data)
    saved = _saved_run(run_dir, resume=True)
    if given & {"dataset", "data_dir"}:  # alternatives: typing one names the data, so neither comes from the run
        given = given | {"dataset", "data_dir"}
    keep = {key: value for key, value in saved["train"].items()
            if key in TrainConfig.__dataclass_fields__ and key not in given and key not in ("output", "resume")}
    keep_data = {key: value for key, value in saved["data"].items()
                 if key in DataConfig.__dataclass_fields__ and key not in given}
    cfg = dataclasses.replace(cfg, **keep, output=str(run_dir))  # runs/latest, read once: it may move
    return cfg, dataclasses.replace(data, **keep_data)


def _saved_run(run_dir: Path, resume: bool) -> dict | None:
    """The run's config.json, ``train`` and ``data`` filled in for a run begun before a setting existed; None
    where there is none, which ``--resume`` (``resume``) refuses."""
    saved = runs.read_config(run_dir)
    if saved is None:
        if resume:
            raise KresError(f"--resume: {run_dir} holds no run (no config.json); drop --resume to start one")
        return None
    return {"train": {**_BEFORE_ADDED, **saved.get("train", {})}, "data": saved.get("data", {})}


def _identity(cfg: dict, data: dict) -> dict:
    """The settings that make a run this run; a relative path (a run saved before they were absolute) is read
    from the working directory, as that run was."""
    identity = {"train": {k: v for k, v in cfg.items() if k not in _NOT_IDENTITY}, "data": dict(data)}
    for part, name in _PATHS:
        if identity[part].get(name) is not None:
            identity[part][name] = _absolute_path(name, identity[part][name])
    return identity


def _weights_begun_with(run_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """A checkpointed run goes on with the --weights it began with, whatever was typed once that file was gone
    (:func:`_check_existing_run` lets it be moved or left out): they set the BN default (:func:`frozen_bn`), and
    config.json keeps them. Without a checkpoint nothing of them was kept, and the typed ones start it."""
    saved = _saved_run(run_dir, resume=False)
    return dataclasses.replace(cfg, weights=saved["train"].get("weights")) if saved is not None else cfg


def _check_existing_run(run_dir: Path, cfg: TrainConfig, data: DataConfig) -> dict | None:
    """None for a new run; the checkpoint state when ``run_dir`` holds this same run (resume it).

    A run directory that holds a different run is an error, with or without --resume: resuming means
    continuing with the same settings, so the schedule and the step count stay those of the first start.
    """
    saved = _saved_run(run_dir, cfg.resume)
    if saved is None:
        if run_dir.exists() and any(p for p in run_dir.iterdir() if not p.name.startswith(".")):
            raise KresError(f"{run_dir} exists and is not a kres run directory; choose another --output")
        return None
    old = _identity(saved["train"], saved["data"])
    new = _identity(asdict(cfg), asdict(data))
    for name, _, _ in _moved_data(old["data"], new["data"]):  # its classes and counts are checked once read
        old["data"][name] = new["data"][name]
    state = runs.read_checkpoint_state(run_dir)
    started_from = old["train"].get("weights")
    if started_from not in (None, "imagenet") and not Path(started_from).exists():  # moved or gone: any --weights
        old["train"]["weights"] = new["train"].get("weights")  # (or none) goes on; see _weights_begun_with
    if old != new:
        diffs = [f"{part}.{key}: {old[part].get(key)!r} -> {new[part].get(key)!r}"
                 for part in ("train", "data") for key in sorted(set(old[part]) | set(new[part]))
                 if old[part].get(key) != new[part].get(key)]
        more = f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""  # the hint names them all
        options = _options_back({**old["train"], **_data_options(old["data"])},
                                {**new["train"], **_data_options(new["data"])})
        hint = f" ({'; '.join(options)})" if options else ""
        if state and state.get("complete"):  # nothing to resume: "repeat --epochs 3" trained nothing more
            raise KresError(f"{run_dir} holds a finished run with other settings ({'; '.join(diffs[:4])}{more}): "
                            f"choose another --output (--weights {run_dir} starts the new run from this one)")
        raise KresError(f"{run_dir} holds a run with other settings ({'; '.join(diffs[:4])}{more}): repeat its "
                        f"options{hint} to resume it, or choose another --output{_nothing_trained(run_dir, state)}")
    return state or {"steps": 0}


def _nothing_trained(run_dir: Path, state: dict | None) -> str:
    """What an other-settings refusal adds for a run stopped before its first checkpoint: its folder may go."""
    return runs.start_again_hint(run_dir) if not state and runs.nothing_trained(run_dir) else ""


# The data settings that are train's options, under the option's name (the others are train's own, or no option).
_DATA_OPTIONS = {"dataset": "dataset", "data_dir": "data_dir", "tfds_dir": "tfds_dir", "val_split": "val_split",
                 "mixup_alpha": "mixup", "cutmix_alpha": "cutmix"}


def _data_options(data: dict) -> dict:
    """A run's data settings under their option names, for :func:`_options_back` (it named none: a run of
    ``--dataset synthetic`` rerun without it was "other settings (data.dataset: 'synthetic' -> None)", no option)."""
    return {option: data.get(field) for field, option in _DATA_OPTIONS.items() if field in data}


def _options_back(old: dict, new: dict) -> list[str]:
    """The options that give the run's own settings back where they differ: numbers and words as they were (which
    also covers a recipe default changed by a kres upgrade); a setting the run left to kres (None) is left out.
    Only numbers were named: "--precision float32" against a run of "auto" said "repeat its options", none named."""
    typed, left_out = [], []
    for key, value in old.items():
        if value == new.get(key) or isinstance(new.get(key), bool) or not (value is None or type(value) in (int, float,
                                                                                                           str)):
            continue  # flags are left out: their names are the command line's (--no-xla, --train-bn)
        option = f"--{key.replace('_', '-')}"
        if value is None:
            left_out.append(option)
        else:
            typed.append(f"{option} {shlex.quote(str(value))}")
    return [" ".join(typed)] * bool(typed) + [f"leave out {', '.join(left_out)}"] * bool(left_out)


def _moved_data(old: dict, new: dict) -> list[tuple[str, str, str]]:
    """(field, from, to) for each data folder (``data_dir``, ``tfds_dir``) that is gone from where the run recorded
    it and is given elsewhere: the run resumes there, as long as it gives as many images of the same classes
    (:func:`_check_same_images`; the files themselves are not compared). A moved folder made the run impossible to
    resume: the recorded one did not exist, and the new one was "other settings"."""
    return [(name, old[name], new[name]) for part, name in _PATHS if part == "data"
            if old.get(name) and new.get(name) and old[name] != new[name] and not Path(old[name]).exists()]


def _say_moved_data(stream, run_dir: Path, data: DataConfig) -> None:
    saved = _saved_run(run_dir, resume=False)
    if saved is not None:
        old, new = _identity(saved["train"], saved["data"]), _identity({}, asdict(data))
        for name, before, now in _moved_data(old["data"], new["data"]):
            _say(stream, f"the run's --{name.replace('_', '-')} {before} is gone: reading {now} (checked: the same "
                         "classes and image counts)")


def _check_same_images(run_dir: Path, datasets) -> None:
    """A run resumes (or is found finished) only on the images it started with: with images added or removed,
    the step count, the schedule and the checkpoint would no longer match, so it is an error, not a restart."""
    saved = (runs.read_config(run_dir) or {}).get("resolved", {})
    labels_path = run_dir / runs.LABELS_FILE
    old_classes = labels_path.read_text().splitlines() if labels_path.is_file() else datasets.class_names
    old = (saved.get("num_train", datasets.num_train), saved.get("num_val", datasets.num_val))
    if old != (datasets.num_train, datasets.num_val) or old_classes != datasets.class_names:
        classes = ("" if old_classes == datasets.class_names
                   else f", classes {len(old_classes)} -> {len(datasets.class_names)}")
        raise KresError(
            f"{run_dir} was started on {old[0]} training and {old[1]} validation images, the data now gives "
            f"{datasets.num_train} and {datasets.num_val}{classes}: start a new run with another --output"
            f"{runs.start_again_hint(run_dir)}")


def _point_latest(run_dir: Path) -> None:
    """``runs/latest -> NAME``, replaced in one rename so readers never see it missing."""
    link = run_dir.parent / runs.LATEST
    if run_dir.name == runs.LATEST or (link.exists() and not link.is_symlink()):  # never replace a user's own file
        return
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(run_dir.name, tmp)
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _resuming(start: int, steps_per_epoch: int, epochs: int) -> str:
    if not start:
        return ""
    if start >= steps_per_epoch * epochs:  # stopped after the last checkpoint (it said "epoch 4" of 3)
        return f" (all {epochs_text(epochs)} trained: writing the last files)"
    return f" (resuming at step {start}, epoch {start // steps_per_epoch + 1})"


def _banner(cfg, data, datasets, placement, precision, plan: _Plan, run_dir, start) -> str:
    source, steps_per_epoch = _data_name(data), plan.steps_per_epoch
    lines = [
        f"ResNet-{cfg.depth} ({cfg.variant}, {cfg.stem} stem, {cfg.image_size} px) on {source}: "
        f"{datasets.num_train} train / {datasets.num_val} val images"
        + (f" ({datasets.val_note})" if datasets.val_note else "")
        + f", {len(datasets.class_names)} classes"
        + (f", {counted(datasets.skipped_files, 'unreadable file')} skipped ({first_five(datasets.skipped)})"
           if datasets.skipped else ""),
        f"{placement.replicas} replica(s) ({placement.kind}, {placement.accelerator}), {precision}, "
        f"XLA {'on' if plan.xla else 'off'}; batch {cfg.batch_size}, {epochs_text(cfg.epochs)} x "
        f"{counted(steps_per_epoch, 'step')}; "
        f"{cfg.optimizer} peak lr {plan.peak_lr:.4g}, "
        f"warmup {_warmup_text(cfg.warmup_epochs, plan.schedule)}, wd {cfg.weight_decay:g}"
        + (f", label smoothing {cfg.label_smoothing:g} (in loss and val_loss, not in kres evaluate's loss)"
           if cfg.label_smoothing else "")
        + (f"; ema {cfg.ema}: the weights' moving average is validated and saved" if cfg.ema else ""),
        *_beyond_the_step(cfg, data),
        f"run dir {run_dir}" + _resuming(start, steps_per_epoch, cfg.epochs),
        *([_starting_from(cfg.weights, datasets.class_names)] if cfg.weights and not start else []),
    ]
    return "\n".join(lines)


def _warmup_text(epochs: float, schedule: Schedule) -> str:
    """The banner's warmup: its epochs, and the steps the rate rises for where they are not those epochs' (0.1 of
    an epoch of 3 steps is none: the banner said "warmup 0.1 epochs" of a run whose rate started at its peak; the
    warmup ends a step before the run does)."""
    steps = schedule.warmup
    if epochs == int(epochs) and steps == schedule.warmup_steps:
        return epochs_text(epochs)
    return f"{epochs_text(epochs)} ({counted(steps, 'step')}{'' if steps else ': none'})"


def _starting_from(weights: str, class_names: list[str]) -> str:
    """The banner's line for the weights a run starts from; where they are a model of as many classes with names
    of its own (its meta.json), that its classifier is kept and matched to the data's classes by position: a
    circle/square/triangle model started an apple/banana/cherry run without a word."""
    line = f"starting from the weights of {weights}"
    try:
        meta = find_meta(weights) if weights != "imagenet" else None
    except KresError:  # a damaged meta.json: the weights themselves were checked
        return line
    names = [str(name) for name in class_names]
    if meta is None or len(meta.labels) != len(names) or meta.labels == names or generic_labels(meta.labels):
        return line
    pairs = ", ".join(f"{old} -> {new}" for old, new in zip(meta.labels[:3], names[:3]))
    more = f", and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{line} (its classifier is kept, its classes taken as this data's by position, not name: {pairs}{more})"


def _beyond_the_step(cfg: TrainConfig, data: DataConfig) -> list[str]:
    """The banner's line for the augmentations asked for and a frozen first phase (config.json had them; the
    banner named none)."""
    parts = [*(["RandAugment"] if data.randaugment else []),
             *([f"mixup alpha {data.mixup_alpha:g}"] if data.mixup_alpha else []),
             *([f"CutMix alpha {data.cutmix_alpha:g}"] if data.cutmix_alpha else [])]
    if frozen := cfg.freeze_backbone_epochs:
        parts.append(f"only the classifier trains in epoch{f's 1-{frozen}' if frozen > 1 else ' 1'} (backbone frozen)")
    return ["; ".join(parts)] if parts else []


def epochs_text(count: float) -> str:
    """'1 epoch', '2 epochs', '0.5 epochs'."""
    return counted(count, "epoch")


def _say(stream, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()
