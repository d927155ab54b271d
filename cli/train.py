"""``kres train``."""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource

from keras_resnet.specs import (
    BELOW_ONE,
    MAX_EPOCHS,
    MAX_LR,
    MAX_SEED,
    MAX_WEIGHT_DECAY,
    MIX_ALPHA,
    OPTIMIZERS,
    PRECISIONS,
    STEMS,
)
from kres.options import (
    FOLDER_MODEL_ORDER,
    DatasetName,
    FiniteFloat,
    PathType,
    Whole,
    depth_option,
    image_size_option,
    variant_option,
)


class _TrainCommand(click.Command):
    def parse_args(self, ctx, args):
        """--depth is required unless --resume reads it from the run: checked while parsing, before the backend
        is imported, as click checks a required option (and, as click does, not while a shell completes)."""
        rest = super().parse_args(ctx, args)
        if ctx.params.get("depth") is None and not ctx.params.get("resume") and not ctx.resilient_parsing:
            raise click.MissingParameter(ctx=ctx, param=next(p for p in self.params if p.name == "depth"))
        return rest


@click.command(cls=_TrainCommand,
               help="Train a ResNet. With no data named it trains on the built-in handwritten digits "
                    "(scikit-learn, 1,797 images), with a recipe that suits them; options override the recipe.")
@depth_option(required=False, note=" Required, except with --resume.")
@variant_option()
@click.option("--dataset", type=DatasetName(), default=None,
              help="TFDS name (cifar10, imagenette/320px-v2, tf_flowers, ...), 'synthetic', or 'digits' (the default).")
@click.option("--data-dir", type=PathType(file_okay=False), default=None,
              help="Image folders: DIR/train/<class>/ and DIR/val/<class>/, or DIR/<class>/ split by --val-split.")
@click.option("--tfds-dir", type=PathType(file_okay=False), default=None, help="TFDS data_dir.")
@click.option("--val-split", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True,
              help="Fraction held out for validation when the data has no validation split (above 0, below 1).")
@click.option("--epochs", type=Whole(1, MAX_EPOCHS), default=None, help="Default: the recipe's.")
@click.option("--batch-size", type=Whole(min=1), default=None,
              help="GLOBAL batch, split across replicas. Default: the recipe's.")
@image_size_option(default=None, note="Default: the recipe's.")
@click.option("--stem", type=click.Choice(STEMS), default=None, help="Default: the recipe's.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: mixed_bfloat16 on TPUs and GPUs with compute capability 8+, mixed_float16 on older "
                   "GPUs, float32 on CPU.")
@click.option("--xla/--no-xla", default=None, help="Compile steps with XLA. Default: on for GPUs/TPUs, off on CPU.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="SGD with Nesterov momentum, or AdamW. Default: the recipe's (sgd).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True, max=MAX_LR), default=None,
              help=f"Base learning rate for a global batch of 256, scaled linearly with --batch-size (above 0, at "
                   f"most {MAX_LR:,}).")
@click.option("--warmup-epochs", type=FiniteFloat(min=0, max=MAX_EPOCHS, max_open=True), default=None,
              help="Linear warmup before the cosine decay; shorter than --epochs.")
@click.option("--weight-decay", type=FiniteFloat(min=0, max=MAX_WEIGHT_DECAY), default=None,
              help="On conv/dense kernels only (never BN or biases): each step shrinks them by the learning rate "
                   f"times this (at most {MAX_WEIGHT_DECAY:g}).")
@click.option("--label-smoothing", type=FiniteFloat(0, BELOW_ONE), default=None,
              help=f"0 to {BELOW_ONE}. Default: the recipe's.")
@click.option("--ema", type=FiniteFloat(0, BELOW_ONE), default=None, metavar="MOMENTUM",
              help="Validate and save a moving average of the weights, updated every step with this momentum "
                   f"(0: off; at most {BELOW_ONE}). Default: the recipe's (0.9 on the digits, off elsewhere).")
@click.option("--mixup", type=FiniteFloat(*MIX_ALPHA, off=0.0), default=0.0, show_default=True,
              help=f"Mixup alpha (0: off, else {MIX_ALPHA[0]:g} to {MIX_ALPHA[1]:,g}).")
@click.option("--cutmix", type=FiniteFloat(*MIX_ALPHA, off=0.0), default=0.0, show_default=True,
              help=f"CutMix alpha (0: off, else {MIX_ALPHA[0]:g} to {MIX_ALPHA[1]:,g}).")
@click.option("--randaugment", is_flag=True, help="RandAugment-style augmentation.")
@click.option("--weights", default=None, help=f"'imagenet', a weights file, or a run or export folder (its "
                                              f"{FOLDER_MODEL_ORDER}) to start from (the classifier is skipped when "
                                              "the class count differs).")
@click.option("--freeze-backbone-epochs", type=Whole(min=0), default=0, show_default=True,
              help="Train only the classifier for this many epochs first (BN in inference mode).")
@click.option("--freeze-bn/--train-bn", default=None,
              help="Keep BN layers frozen all through training: their statistics, gamma and beta stay as "
                   "--weights gave them (inference mode). Default: frozen when fine-tuning from --weights with "
                   "fewer than 16 images per replica.")
@click.option("--qat-epochs", type=Whole(0, MAX_EPOCHS), default=0, show_default=True,
              help="After training, quantization-aware fine-tuning for this many epochs (into RUN/qat).")
@click.option("--output", "-o", type=PathType(file_okay=False), default=None,
              help="Run directory. Default: runs/resnet<depth>-<data>-<time>. The same command on the same "
                   "directory resumes it.")
@click.option("--resume", is_flag=True, help="Continue the run in --output (default: runs/latest) with the settings "
                                             "it started with; options given must match them.")
@click.option("--checkpoint-steps", type=Whole(min=1), default=None,
              help="Also checkpoint every N steps inside an epoch (always at each epoch's end; by default "
                   "every 1000 steps when an epoch is longer).")
@click.option("--seed", type=Whole(0, MAX_SEED), default=0, show_default=True)
@click.option("--tpu", is_flag=True, help="Train on a TPU with TPUStrategy (TPU_NAME, default 'local').")
def train(depth, variant, dataset, data_dir, tfds_dir, val_split, epochs, batch_size, image_size, stem, precision,
          xla, optimizer, lr, warmup_epochs, weight_decay, label_smoothing, ema, mixup, cutmix, randaugment, weights,
          freeze_backbone_epochs, freeze_bn, qat_epochs, output, resume, checkpoint_steps, seed, tpu) -> None:
    from keras_resnet.data import DataConfig, is_split, scan_progress, scans_once
    from keras_resnet.errors import KresError, counted
    from keras_resnet.terminal import live_line
    from keras_resnet.train import TrainConfig, epochs_text, resumed
    from keras_resnet.train import train as run_training

    typed = _typed(click.get_current_context())
    if data_dir is not None and tfds_dir is not None:  # it was ignored
        raise KresError("--tfds-dir says where TFDS datasets are, and --data-dir reads image folders: drop --tfds-dir")
    if data_dir is not None and "val_split" in typed and not is_split(data_dir):  # it was ignored
        raise KresError(f"{data_dir} has train/ and val/, and --val-split splits a folder that has no val/: drop "
                        "--val-split")
    builtin = dataset == "digits" and data_dir is None  # the same run as no --dataset; with --data-dir, an error
    if data_dir is None and dataset in (None, "digits", "synthetic") and tfds_dir is not None:  # it was ignored
        raise KresError(f"--tfds-dir says where TFDS datasets are, and {dataset or 'digits'} is built in: drop "
                        "--tfds-dir, or name a TFDS dataset with --dataset")
    if data_dir is None and dataset == "synthetic" and "val_split" in typed:  # it was ignored
        raise KresError("--dataset synthetic has a validation set of its own: drop --val-split")
    if data_dir is None and dataset not in (None, "digits", "synthetic") and "val_split" in typed:
        from keras_resnet.data import tfds_held_out

        held_out = tfds_held_out(DataConfig(dataset=dataset, tfds_dir=tfds_dir))
        if held_out:  # it was ignored
            raise KresError(f"{dataset} has a {held_out} split of its own, which kres validates on: drop --val-split")
    data = DataConfig(dataset=None if builtin else dataset, data_dir=data_dir, tfds_dir=tfds_dir,
                      val_split=val_split, seed=seed, randaugment=randaugment, mixup_alpha=mixup,
                      cutmix_alpha=cutmix)
    cfg = TrainConfig(depth=depth, variant=variant, stem=stem, epochs=epochs, batch_size=batch_size,
                      image_size=image_size, precision=precision, xla=xla, optimizer=optimizer, lr=lr,
                      warmup_epochs=warmup_epochs, weight_decay=weight_decay, label_smoothing=label_smoothing,
                      ema=ema, weights=weights, freeze_backbone_epochs=freeze_backbone_epochs, freeze_bn=freeze_bn,
                      qat_epochs=qat_epochs,
                      output=output, resume=resume, seed=seed, tpu=tpu, checkpoint_steps=checkpoint_steps)
    if resume:
        cfg, data = resumed(cfg, data, typed)
    chosen: list[Path] = []  # the run folder, once train has chosen it
    try:
        # each folder checked once: the pipelines, then the input statistics (and QAT's); a long check says so
        with scans_once(), scan_progress(lambda message: click.echo(message, err=True)):
            result = run_training(cfg, data, on_run_dir=chosen.append)
    except KeyboardInterrupt:
        click.echo(err=True)  # ends the live bar's line (and the terminal's ^C), as click does for the other commands
        live_line(False)
        # with --resume, cfg.output is the run resumed: "the same command" goes on with it
        raise click.Abort(resume_hint(chosen[-1] if chosen else None, bool(cfg.output))) from None
    if result.best_val_accuracy != result.best_val_accuracy:  # NaN: a multi-worker run's non-chief worker
        click.echo(f"worker finished {result.steps} steps; the chief wrote {result.run_dir}")
        return
    validated = [row for row in result.history if "val_accuracy" in row]
    best = max(validated, key=lambda row: row["val_accuracy"], default=None)  # the first of equals, as best.keras
    trained = f"{epochs_text(result.epochs)}, {counted(result.steps, 'step')}"
    when = f"at epoch {int(best['epoch'])} (of {trained})" if best else f"after {trained}"
    click.echo(f"{result.run_dir}: best val top-1 {result.best_val_accuracy:.4f} {when}; best model "
               f"{result.best_model}")


_FIELDS = {"mixup": "mixup_alpha", "cutmix": "cutmix_alpha"}  # option -> config field, where they differ


def _typed(ctx: click.Context) -> set[str]:
    """The config fields of the options given on the command line (the rest are defaults)."""
    return {_FIELDS.get(name, name) for name in ctx.params
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}


def resume_hint(run: Path | None, output: bool) -> str:
    """What an interrupted run kept and what to run next, from any folder: where ``run`` (the folder train chose,
    None before it chose one) resumes (the last checkpoint), that nothing was kept yet, or that it had finished
    training. ``output``: the command names the folder, so running it again resumes. It read runs/latest where no
    --output was given, which a second run started meanwhile had moved: the hint named that run."""
    from keras_resnet import runs
    from keras_resnet.errors import KresError

    run = Path(os.path.abspath(run)) if run is not None and runs.is_run_dir(run) else None  # no config: nothing
    try:
        state = runs.read_checkpoint_state(run) if run is not None else None
        total = ((runs.read_config(run) or {}).get("resolved") or {}).get("total_steps") if state else None
    except KresError as err:  # what the next command would say
        return f"{err}."
    if not state or not (state.get("weights") or state.get("complete")):
        return _NOTHING_YET
    command = f"kres train --resume --output {os.path.abspath(run)}"
    if state.get("complete") or (total and state["steps"] >= total):
        return f"It had trained every step; run the same command again, or {command}, to write what is left."
    where = f" from step {state['steps']}" + (f" of {total}" if total else "")
    return f"To resume{where}, run the same command again, or: {command}" if output else f"To resume{where}: {command}"


_NOTHING_YET = "Nothing was checkpointed yet: run the same command again to start over."
