"""``kres evaluate``."""

from __future__ import annotations

import json
import sys

import click

from kres.options import DatasetName, PathType, Whole, image_size_option


def _one_or_two(ctx, param, models: tuple[str, ...]) -> tuple[str, ...]:
    if len(models) > 2:
        raise click.UsageError(f"give one model, or two to compare; got {len(models)}", ctx)
    return models


def _one_data_option(ctx, param, value):
    # Checked while parsing, so the mistake is answered before TensorFlow starts.
    other = {"dataset": "data_dir", "data_dir": "dataset"}[param.name]
    if value is not None and ctx.params.get(other) is not None:
        raise click.UsageError("--dataset and --data-dir are alternatives: give one", ctx)
    return value


@click.command(help="Top-1/5, loss, per-class accuracy and a confusion matrix of a .keras, SavedModel, .tflite or "
                    "run dir. With no data option, the data the model was trained on. Two models: compared on the "
                    "same images (top-1 agreement, largest output difference).")
@click.argument("models", nargs=-1, required=True, metavar="MODEL [MODEL_B]", callback=_one_or_two)
@click.option("--dataset", type=DatasetName(), default=None, callback=_one_data_option,
              help="TFDS name ('cifar10', ...), 'synthetic' or 'digits'.")
@click.option("--data-dir", default=None, type=PathType(file_okay=False), callback=_one_data_option,
              help="Image folders as train takes them: DIR/val/<class>/ is read whole, or the validation split "
                   "of DIR/<class>/ (with the run's --val-split and --seed; --all-images: every image).")
@click.option("--all-images", is_flag=True,
              help="Score every image of --data-dir's class folders (a held-out test folder, not the one the "
                   "model was trained on), not the validation split training would keep back.")
@click.option("--tfds-dir", default=None, type=PathType(),
              help="TFDS data_dir holding --dataset (alone: the run's dataset, found there).")
@image_size_option(default=None)
@click.option("--batch-size", type=Whole(min=1), default=64, show_default=True)
@click.option("--output", "-o", default=None, type=PathType(file_okay=False),
              help="Directory for evaluation.json and the confusion PNG(s). [default: eval/ beside the model]")
@click.option("--threads", type=Whole(min=1), default=None, help="TFLite interpreter threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of a table.")
def evaluate(models, dataset, data_dir, all_images, tfds_dir, image_size, batch_size, output, threads,
             as_json) -> None:
    from keras_resnet.data import scan_progress
    from keras_resnet.evaluate import EvalConfig
    from keras_resnet.evaluate import evaluate as run_evaluate

    cfg = EvalConfig(models=list(models), dataset=dataset, data_dir=data_dir, tfds_dir=tfds_dir,
                     image_size=image_size, batch_size=batch_size, output=output, num_threads=threads,
                     all_images=all_images)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="Evaluating", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        with scan_progress(lambda message: click.echo(message, err=True)):
            result = run_evaluate(cfg, progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "json_path": result.json_path}, indent=2))
        return
    _print(result)


def _print(result) -> None:
    from keras_resnet.errors import counted

    data = result.data
    source = data.get("dataset") or data.get("data_dir") or "digits (built-in)"
    images = counted(data["num_val"], "image")
    if data.get("every_image"):
        images = f"all {data['num_val']} of its images"
    elif data.get("split_from"):
        # the hint for a folder the user named: of the run's own, the rest was trained on (named or not)
        hint = (f"; --all-images scores all {data['split_from']}"
                if data["source"] == "options" and not data.get("own_split") else "")
        images = (f"{data['num_val']} of its {data['split_from']} images (the validation split: --val-split "
                  f"{data['val_split']}, seed {data['seed']}{hint})")
    classes = len(data["class_names"])
    seen = data.get("classes_seen", classes)  # a folder of some of the model's classes
    classes = f"{classes} classes" if seen == classes else f"{seen} of its {classes} classes"
    # where the data came from, not the size ("32 px (from the options)" read as an --image-size never given)
    origin = "named on the command line" if data["source"] == "options" else f"from the {data['source']}"
    click.echo(f"Data: {source}, {images}, {classes}, {data['image_size']} px (data {origin})")
    for report in result.models:
        m = report.metrics
        click.echo(f"{report.path} ({report.kind})")
        click.echo(f"  top-1 {m.top1:.2%}   top-{m.top_k} {m.top5:.2%}   loss {m.loss:.4f}   "
                   f"{counted(m.num_examples, 'image')} in {report.seconds:.1f} s")
        worst = sorted((acc, name) for name, acc in m.per_class.items() if acc is not None)[:5]
        click.echo("  weakest classes: " + ", ".join(f"{name} {acc:.1%}" for acc, name in worst))
        click.echo(f"  confusion matrix: {report.confusion_png}")
    if result.comparison:
        c = result.comparison
        click.echo(f"A vs B: top-1 agreement {c.top1_agreement:.2%}, max |output diff| {c.max_abs_diff:.2e}, "
                   f"mean {c.mean_abs_diff:.2e}, top-1 B-A {c.top1_delta * 100:+.2f} points")
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Wrote {result.json_path}")
