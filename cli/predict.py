"""``kres predict``."""

from __future__ import annotations

import json

import click

from kres.options import PathType, Whole, image_size_option


@click.command(help="Print the top-k labels and scores of each image, with a .keras, SavedModel, .tflite or run "
                    "dir. Images: any format Pillow reads, or a folder (its JPEG, PNG, BMP, GIF, TIFF and WebP files, "
                    "by name; not its sub-folders); they are resized as in evaluation: the shorter side and a centre "
                    "crop, or the whole frame for a model trained on the built-in digits (as its run, meta.json or "
                    "card records). An image that cannot be read is skipped with a line on stderr, and the exit "
                    "status is 1.")
@click.argument("model", type=PathType())
@click.argument("images", nargs=-1, required=True, type=PathType())
@click.option("--top-k", type=Whole(min=1), default=5, show_default=True)
@image_size_option(default=None, note="Only for a model that takes any size and records none.")
@click.option("--batch-size", type=Whole(min=1), default=32, show_default=True)
@click.option("--threads", type=Whole(min=1), default=None, help="TFLite interpreter threads.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def predict(model, images, top_k, image_size, batch_size, threads, as_json) -> None:
    from keras_resnet.predict import PredictConfig
    from keras_resnet.predict import predict as run_predict

    cfg = PredictConfig(model=model, images=list(images), top_k=top_k, image_size=image_size,
                        batch_size=batch_size, num_threads=threads)
    try:
        results = run_predict(cfg, say=lambda note: click.echo(f"note: {note}", err=True))
    except KeyboardInterrupt:
        click.echo(err=True)  # ends the line the terminal's ^C is on, as click does
        raise click.Abort("predict writes no files: nothing to finish.") from None
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        _print([result for result in results if not result.error])
    skipped = [result for result in results if result.error]
    for result in skipped:  # last, where they are seen
        click.echo(f"skipped: {result.error}", err=True)
    if skipped:
        click.get_current_context().exit(1)


def _print(results) -> None:
    for result in results:
        click.echo(result.image)
        width = max(len(p.label) for p in result.predictions)
        for rank, p in enumerate(result.predictions, 1):
            click.echo(f"  {rank}. {p.label:<{width}}  {p.score:.4f}")
