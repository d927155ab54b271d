"""``kres bench``: each benchmark runs its peer in the same command and writes JSON + markdown."""

from __future__ import annotations

import click

from kres.options import depth_option


@click.group(help="Benchmarks against peers, run in the same command; results go to benchmarks/results/.")
def bench() -> None:
    pass


@bench.command(help="Training images/s on synthetic batches already on the device, against keras.applications "
                    "ResNet50 on the same Keras backend and torchvision where PyTorch is installed.")
@depth_option(default=50)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), default=224, show_default=True)
@click.option("--precision", type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"]), default="float32",
              show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="Timed steps.")
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True, help="Untimed steps.")
@click.option("--xla/--no-xla", default=True, show_default=True)
@click.option("--torch/--no-torch", "with_torch", default=True, show_default=True,
              help="Also measure torchvision where torch imports.")
@click.option("--torch-compile/--no-torch-compile", default=True, show_default=True)
@click.option("--name", default=None, help="Results file stem (default throughput-<backend>).")
def throughput(depth, batch_size, image_size, precision, steps, warmup, xla, with_torch, torch_compile, name):
    from keras_resnet.bench import throughput as bench_throughput

    cfg = bench_throughput.Config(depth=depth, batch_size=batch_size, image_size=image_size, precision=precision,
                                  steps=steps, warmup=warmup, xla=xla, torch=with_torch,
                                  torch_compile=torch_compile, results_name=name)
    result = bench_throughput.run(cfg)
    click.echo(result["table"])
    click.echo(f"wrote {result['results_file']}")
