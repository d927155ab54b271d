"""``kres bench``: each benchmark runs its peer in the same command and writes JSON + markdown."""

from __future__ import annotations

import os

import click

from keras_resnet.bench.common import RESULTS_DIR
from keras_resnet.specs import POLICIES
from kres.options import (
    DepthType,
    FiniteFloat,
    PathType,
    SuggestingGroup,
    Whole,
    depth_option,
    image_size_option,
    num_classes_option,
)

# Where every benchmark writes (the checkout kres is installed from, whatever folder it runs in; see results_home).
RESULTS = os.path.abspath(RESULTS_DIR)


def _plain_name(ctx, param, value: str | None) -> str | None:
    """--name is a file name in RESULTS: "a/b" wrote RESULTS/a/b.json and "" a hidden ".json", after the whole run."""
    if value is not None and (not value.strip() or value.startswith(".") or any(c in value for c in "/\\\0")):
        raise click.BadParameter(f"{value!r} is no plain file name: give one such as my-run (no folder, not hidden); "
                                 f"results go to {RESULTS}")
    return value


def _name_option(default: str | None, default_text: str = ""):
    return click.option("--name", default=default, show_default=default is not None, metavar="NAME",
                        callback=_plain_name,
                        help=f"Results file name: writes NAME.json and NAME.md to {RESULTS}{default_text}.")


def _wrote(result: dict) -> None:
    click.echo(f"wrote {os.path.abspath(result['results_file'])}")


def _say(line: str) -> None:
    """A benchmark's progress: on stderr, off the table's stdout."""
    click.echo(line, err=True)


@click.group(cls=SuggestingGroup,
             help=f"Benchmarks against peers, run in the same command; results go to {RESULTS}.")
def bench() -> None:
    pass


@bench.command(help="Training images/s on synthetic batches already on the device, against torchvision where "
                    "PyTorch is installed and keras.applications ResNet50 on the same Keras backend. With no size "
                    "given, a CPU measures ResNet-18 at 32 px, batch 64 and ResNet-50 at 64 px, batch 16.")
@click.option("--depth", type=DepthType(), default=None, help="Default: 50 on a GPU; both CPU sizes on a CPU.")
@click.option("--batch-size", type=Whole(min=1), default=None, help="Default: 32 on a GPU.")
@image_size_option(default=None, note="Default: 224 on a GPU.")
@click.option("--precision", type=click.Choice(POLICIES), default="float32",
              show_default=True)
@click.option("--steps", type=Whole(min=1), default=10, show_default=True, help="Timed steps per round.")
@click.option("--warmup", type=Whole(min=1), default=3, show_default=True, help="Untimed steps before the first round.")
@click.option("--rounds", type=Whole(min=1), default=3, show_default=True,
              help="Ours and the peers alternate, a round of --steps each, this many times; the median of the "
                   "rounds is reported.")
@click.option("--xla/--no-xla", default=None,
              help="Default: on for GPUs and the JAX backend, off for TensorFlow on a CPU (slower there).")
@click.option("--torch/--no-torch", "with_torch", default=True, show_default=True,
              help="Also measure torchvision where torch imports.")
@click.option("--torch-compile/--no-torch-compile", default=None, help="Default: on for GPUs, off on a CPU.")
@_name_option(None, " (default: throughput-<backend>)")
def throughput(depth, batch_size, image_size, precision, steps, warmup, rounds, xla, with_torch, torch_compile,
               name):
    from keras_resnet.bench import throughput as bench_throughput

    on_cpu = not bench_throughput.has_accelerator()
    xla = (not on_cpu or bench_throughput.keras_backend() == "jax") if xla is None else xla
    torch_compile = not on_cpu if torch_compile is None else torch_compile
    if on_cpu and depth is None and batch_size is None and image_size is None:
        sizes = bench_throughput.CPU_SIZES
    else:
        sizes = [(depth or 50, image_size or 224, batch_size or 32)]
    cfgs = [bench_throughput.Config(depth=d, batch_size=b, image_size=i, precision=precision, steps=steps,
                                    warmup=warmup, rounds=rounds, xla=xla, torch=with_torch,
                                    torch_compile=torch_compile)
            for d, i, b in sizes]
    result = bench_throughput.run_sizes(cfgs, name, say=_say)
    click.echo(result["table"])
    if not result["measured"]:
        from keras_resnet.bench.common import nothing_measured

        raise nothing_measured(result["results_file"])
    _wrote(result)


def _int_list(example: str, least: int | None = None, what: str = "value"):
    """A callback reading a comma-separated list of integers, each ``least`` or more, whose errors give
    ``example``."""
    def read(ctx, param, value: str) -> tuple[int, ...]:
        try:
            items = tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. {example}") from None
        if not items:
            raise click.BadParameter(f"give at least one {what}, e.g. {example}")
        for item in items:
            if least is not None and item < least:
                raise click.BadParameter(f"{item} is not a {what}: give {least} or more, e.g. {example}")
        return items
    return read


def _word_list(ctx, param, value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("give at least one mode, e.g. float32,int8")
    return items


@bench.command(help="TFLite ms per image (batch 1) of float32, float16, dynamic and int8 models, against "
                    "keras.applications ResNet50 converted with the plain converter calls.")
@click.option("--depths", default="50", show_default=True, callback=_int_list("18,50", what="depth"),
              help="Comma-separated depths, e.g. 18,50.")
@click.option("--modes", default="float32,float16,dynamic,int8", show_default=True,
              callback=_word_list,
              help="Comma-separated TFLite modes.")
@image_size_option()
@click.option("--threads", default="1,2", show_default=True, callback=_int_list("1,2", least=1, what="thread count"),
              help="Interpreter thread counts.")
@click.option("--invokes", type=Whole(min=1), default=30, show_default=True,
              help="Timed invokes; the median is reported.")
@click.option("--warmup", type=Whole(min=0), default=3, show_default=True, help="Untimed invokes.")
@click.option("--calibration-images", type=Whole(min=1), default=8, show_default=True,
              help="Random images for int8 calibration.")
@num_classes_option(least=2)
@click.option("--peer/--no-peer", default=True, show_default=True, help="Also convert and time the peer.")
@click.option("--peer-in-graph/--no-peer-in-graph", default=True, show_default=True,
              help="Also the peer with its preprocess_input inside the graph, as ours has (int8; information).")
@click.option("--peer-architecture/--no-peer-architecture", default=True, show_default=True,
              help="Also ours as variant v1, the peer's architecture (ResNet-50 int8).")
@_name_option("tflite")
def tflite(depths, modes, image_size, threads, invokes, warmup, calibration_images, num_classes, peer, peer_in_graph,
           peer_architecture, name):
    from keras_resnet.bench import tflite_latency

    cfg = tflite_latency.Config(depths=depths, modes=modes, image_size=image_size, threads=threads, invokes=invokes,
                                warmup=warmup, calibration_images=calibration_images, peer=peer,
                                peer_in_graph=peer_in_graph, peer_architecture=peer_architecture,
                                num_classes=num_classes, results_name=name)
    result = tflite_latency.run(cfg, say=_say)
    click.echo(result["table"])
    if not result["measured"]:
        from keras_resnet.bench.common import nothing_measured

        raise nothing_measured(result["results_file"])
    _wrote(result)


@bench.command(help="Training-pipeline images/s per core on a generated folder of ~500x375 JPEGs, against a "
                    "naive decode, crop, resize pipeline.")
@click.option("--images", type=Whole(min=3), default=640, show_default=True,
              help="JPEGs to generate (3 or more: the pipelines split off a fifth for validation).")
@image_size_option()
@click.option("--batch-size", type=Whole(min=1), default=64, show_default=True)
@click.option("--batches", type=Whole(min=1), default=6, show_default=True,
              help="Timed batches per pipeline per round.")
@click.option("--warmup", type=Whole(min=0), default=3, show_default=True, help="Untimed batches.")
@click.option("--rounds", type=Whole(min=1), default=5, show_default=True,
              help="The pipelines alternate this many times; the median is reported.")
@click.option("--cores", default="1,0", show_default=True, callback=_int_list("1,0", what="core count"),
              help="Core counts to pin the measurement to, one process each; 0 means every core.")
@click.option("--width", type=Whole(min=32), default=500, show_default=True)
@click.option("--height", type=Whole(min=32), default=375, show_default=True)
@click.option("--cache-dir", type=PathType(file_okay=False), default=None,
              help="Where the generated JPEGs are kept (default: <tmp>/kres-bench-cache).")
@_name_option("pipeline")
def pipeline(images, image_size, batch_size, batches, warmup, rounds, cores, width, height, cache_dir, name):
    from keras_resnet.bench import pipeline as bench_pipeline

    cfg = bench_pipeline.Config(images=images, image_size=image_size, batch_size=batch_size, batches=batches,
                                warmup=warmup, rounds=rounds, cores=cores, width=width, height=height,
                                cache_dir=cache_dir, results_name=name)
    result = bench_pipeline.run(cfg, say=_say)
    click.echo(result["table"])
    _wrote(result)


@bench.command("time-to-accuracy", context_settings={"ignore_unknown_options": True},
               help="Wall seconds for `kres train` on the built-in digits to reach a validation top-1 target. "
                    "Options after `--` go to `kres train` unchanged.")
@depth_option(default=18)
@click.option("--target", type=FiniteFloat(0.0, 1.0, min_open=True), default=0.97, show_default=True,
              help="Validation top-1 to reach, a fraction above 0 and at most 1.")
@click.option("--stop-at-target/--full-run", default=True, show_default=True,
              help="End the training run once the target is reached.")
@click.option("--timeout", type=FiniteFloat(min=1), default=1800, show_default=True, help="Seconds.")
@click.option("--output", "-o", type=PathType(file_okay=False), default=None,
              help="Keep the run in this new directory (default: a temporary one).")
@_name_option("time_to_accuracy")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def time_to_accuracy(depth, target, stop_at_target, timeout, output, name, train_args):
    from keras_resnet.bench import time_to_accuracy as bench_tta

    cfg = bench_tta.Config(depth=depth, target=target, train_args=tuple(train_args), stop_at_target=stop_at_target,
                           timeout_s=timeout, output=output, results_name=name)
    result = bench_tta.run(cfg, say=_say)
    click.echo(result["table"])
    _wrote(result)


@bench.command(help="Training images/s with Keras's own optimizer update against kres's, compiled as one XLA "
                    "computation (TensorFlow backend), alternating in one process.")
@depth_option(default=18)
@image_size_option(default=32)
@click.option("--batch-size", type=Whole(min=1), default=64, show_default=True)
@click.option("--steps", type=Whole(min=1), default=10, show_default=True, help="Timed steps per round.")
@click.option("--warmup", type=Whole(min=1), default=3, show_default=True, help="Untimed steps.")
@click.option("--rounds", type=Whole(min=1), default=6, show_default=True,
              help="The two updates alternate this many times; the median is reported.")
@_name_option("update")
def update(depth, image_size, batch_size, steps, warmup, rounds, name):
    from keras_resnet.bench import update as bench_update

    cfg = bench_update.Config(depth=depth, image_size=image_size, batch_size=batch_size, steps=steps, warmup=warmup,
                              rounds=rounds, results_name=name)
    result = bench_update.run(cfg, say=_say)
    click.echo(result["table"])
    _wrote(result)
