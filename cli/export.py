"""``kres export``."""

from __future__ import annotations

import sys

import click

from keras_resnet.quantize import IO_DTYPES, QUANTIZE_MODES, check_io_dtype, check_mode
from keras_resnet.specs import MAX_EPOCHS
from kres.options import DatasetName, PathType, Whole


@click.command(help="Export a run directory or .keras file: SavedModel (+ .keras), TFLite float32/float16/dynamic/"
                    "int8, quantization-aware int8, Edge TPU check; writes labels.txt, model cards and a report. "
                    "With no format option: the SavedModel (+ .keras) and the float32 TFLite model.")
@click.argument("source", type=PathType(path_type=str))
@click.option("--output", "-o", required=True, type=PathType(path_type=str), help="Directory for the artifacts.")
@click.option("--saved-model", is_flag=True, help="SavedModel (uint8 serving_default, float32 signature) + .keras.")
@click.option("--tflite", is_flag=True, help="A TFLite model (static batch 1) of the --quantize kind.")
@click.option("--quantize", default="float32", show_default=True, metavar="|".join(QUANTIZE_MODES),
              callback=lambda ctx, param, value: _edgetpu_is_int8(ctx, param.name, _choice(check_mode, value)),
              help="TFLite quantization: " + ", ".join(QUANTIZE_MODES) + "; any but float32 implies --tflite.")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning (tf_keras + tfmot), then int8 TFLite.",
              callback=lambda ctx, param, value: _edgetpu_is_int8(ctx, param.name, value))
@click.option("--qat-epochs", type=Whole(1, MAX_EPOCHS), default=2, show_default=True,
              help="Quantization-aware fine-tuning epochs (1 lost 1.4 points of top-1 on the digits, twice).")
@click.option("--edgetpu", is_flag=True, callback=lambda ctx, param, value: _edgetpu_is_int8(ctx, param.name, value),
              help="int8 TFLite checked against the Edge TPU requirements (it is the --tflite model: --quantize int8 "
                   "is implied).")
@click.option("--allow-cpu-ops", is_flag=True, help="With --edgetpu: export even if some ops would run on the CPU.")
@click.option("--calibration-steps", type=Whole(min=1), default=100, show_default=True,
              help="Training images for int8 calibration.")
@click.option("--io-dtype", default="uint8", show_default=True, metavar="|".join(IO_DTYPES),
              callback=lambda ctx, param, value: _choice(check_io_dtype, value),
              help="int8 model input/output type.")
@click.option("--per-channel-dense", is_flag=True,
              help="int8: dense weights per output unit, for XNNPACK-only targets (NNAPI and the Edge TPU need the "
                   "default per-tensor).")
@click.option("--eval-images", type=Whole(min=0), default=1000, show_default=True,
              help="Held-out images for the agreement report, spread over the validation split (0 to skip).")
@click.option("--debug", is_flag=True, help="With --quantize int8: per-layer quantization error (quant_debug.csv/.png, "
                                            "worst layers in the report).")
@click.option("--float-layers", default=None, metavar="NAME[,NAME...]", callback=lambda ctx, param, value:
              _layer_names(value),
              help="With --quantize int8: also write model_int8_mixed.tflite with these Keras layers (and the ops "
                   "reading them) in float, for CPU and GPU-delegate targets; not with --edgetpu.")
@click.option("--float-worst", type=Whole(min=1), default=None, metavar="K",
              help="Like --float-layers, with the K layers the debugger finds worst (1 or more).")
@click.option("--data-dir", type=PathType(file_okay=False), default=None,
              help="Image folders for calibration and held-out images, where the run's data has moved.")
@click.option("--dataset", type=DatasetName(), default=None,
              help="A TFDS name, 'synthetic' or 'digits' for them instead of the run's data.")
@click.option("--tfds-dir", type=PathType(file_okay=False), default=None,
              help="Where the run's TFDS dataset (or --dataset's) is prepared, where it has moved.")
def export(source: str, output: str, saved_model: bool, tflite: bool, quantize: str, qat: bool, qat_epochs: int,
           edgetpu: bool, allow_cpu_ops: bool, calibration_steps: int, io_dtype: str, eval_images: int, debug: bool,
           float_layers: tuple[str, ...], float_worst: int | None, per_channel_dense: bool, data_dir: str | None,
           dataset: str | None, tfds_dir: str | None) -> None:
    from keras_resnet.data import scan_progress, scans_once
    from keras_resnet.export import ExportConfig
    from keras_resnet.export import export as run_export
    from keras_resnet.terminal import live_line

    cfg = ExportConfig(source=source, output=output, saved_model=saved_model, tflite=tflite, quantize=quantize,
                       qat=qat, qat_epochs=qat_epochs, edgetpu=edgetpu, allow_cpu_ops=allow_cpu_ops,
                       calibration_steps=calibration_steps, io_dtype=io_dtype, eval_images=eval_images, debug=debug,
                       float_layers=float_layers, float_worst=float_worst or 0, per_channel_dense=per_channel_dense,
                       data_dir=data_dir, dataset=dataset, tfds_dir=tfds_dir)
    said = []
    try:
        def say(message: str) -> None:
            said.append(message)
            click.echo(f"... {message}", err=True)

        with scans_once(), scan_progress(say):  # held-out images, then each calibration pass
            result = run_export(cfg, progress=say)
    except KeyboardInterrupt as stop:
        click.echo(err=True)  # ends the line the terminal's ^C (or --qat's live bar) is on, as click does
        live_line(False)
        moved = getattr(stop, "moved_in", None)  # it came while the files were moved in: waited for them, or not
        if moved == "all":
            raise click.Abort(f"The export was written whole into {output} first; its report is "
                              "export_report.txt there.") from None
        if moved == "some":
            raise click.Abort(f"Some of this export's files were moved into {output}, beside the earlier export's: "
                              "run the same command again to finish it.") from None
        raise click.Abort(f"Nothing of this export was moved into {output} (an earlier export there is whole); run "
                          "the same command again to export.") from None
    click.echo(_shown_once(result.text, said), nl=False)
    click.echo(f"wrote {len(result.files)} artifacts and export_report.json/.txt to {result.output_dir}")


def _shown_once(text: str, said: list[str]) -> str:
    """The report as printed: where standard output and error are both a terminal, without the warnings the
    progress lines showed already (each int8 export's was on the terminal twice); whole where either is redirected,
    as it is in export_report.txt."""
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        return text
    return "".join(line for line in text.splitlines(keepends=True)
                   if not (line.startswith("warning: ") and line.rstrip("\n") in said))


def _edgetpu_is_int8(ctx: click.Context, name: str, value):
    """An explicit ``--quantize float32`` beside ``--edgetpu`` (without ``--qat``, where float32 means no
    post-training model) is refused: the int8 model alone was made, without a word. Checked as the last of the
    three is parsed, before TensorFlow starts."""
    ctx.params[name] = value
    explicit = ctx.get_parameter_source("quantize") is click.core.ParameterSource.COMMANDLINE
    if ctx.params.get("edgetpu") and ctx.params.get("qat") is False and explicit and \
            ctx.params.get("quantize") == "float32":
        raise click.UsageError("--edgetpu makes an int8 model: drop --quantize float32 (a float32 model is a --tflite "
                               "export without --edgetpu)", ctx)
    return value


def _layer_names(value: str | None) -> tuple[str, ...]:
    """--float-layers' names; one given that names none ("" or ",,,") is refused: it made no mixed model, without
    a word."""
    names = tuple(name.strip() for name in (value or "").split(",") if name.strip())
    if value is not None and not names:
        raise click.BadParameter(f"{value!r} names no layer: give Keras layer names, such as conv2_conv (--debug "
                                 "reports the worst)")
    return names


def _choice(check, value: str) -> str:
    """The library's check of a choice, refused as click refuses any other option value (with the --help hint)."""
    from keras_resnet.errors import KresError

    try:
        return check(value)
    except KresError as err:
        raise click.BadParameter(str(err)) from None
