"""`kres` itself: help, version, `kres info`, one-line errors, and how the package is installed."""

import json
import os
import subprocess
import sys

import click
import pytest

from kres.main import main


def _kres(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_commands_without_importing_tensorflow():
    # `kres --help` must stay instant: no TensorFlow or Keras import just to print help.
    code = (
        "import sys; from kres.main import main; rc = main(['--help']); "
        "print('HEAVY', [m for m in ('tensorflow', 'keras') if m in sys.modules]); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "info" in result.stdout and "Layers, parameters, multiply-adds" in result.stdout
    assert "HEAVY []" in result.stdout


def test_version(capsys):
    code, out, _ = _kres(capsys, "--version")
    assert code == 0 and out.strip() == "kres, version 0.1.0"


def test_info_json_exact_numbers(capsys):
    code, out, _ = _kres(capsys, "info", "--depth", "50", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["trainable_params"] == 25_557_032
    assert data["total_params"] == 25_610_152
    assert data["macs"] == 4_089_184_256
    assert data["weight_layers"] == 50
    assert data["stages"]["C5"] == [7, 7, 2048]


def test_info_table(capsys):
    code, out, _ = _kres(capsys, "info", "--depth", "18", "--image-size", "64", "--num-classes", "10",
                         "--variant", "v1")
    assert code == 0
    assert "resnet18_v1 (v1, imagenet stem) at 64x64x3, 10 classes" in out
    assert "C5    2 x 2 x 512" in out
    assert "weight layers     18" in out
    assert "multiply-adds     148.05 M (148,050,944)" in out  # in G it was "0.15 G"


def test_info_says_one_class(capsys):
    code, out, _ = _kres(capsys, "info", "--depth", "18", "--image-size", "32", "--num-classes", "1")
    assert code == 0
    assert out.splitlines()[0] == "resnet18 (v1.5, imagenet stem) at 32x32x3, 1 class"  # it said "1 classes"


def test_info_multiply_adds_in_a_unit_that_fits(capsys):
    code, out, _ = _kres(capsys, "info", "--depth", "50")
    assert code == 0 and "multiply-adds     4.09 G (4,089,184,256)" in out  # as the README shows it
    code, out, _ = _kres(capsys, "info", "--depth", "152", "--image-size", "4096")
    assert code == 0 and "multiply-adds     3.85 T (3,849,098,051,584)" in out, out  # it said "3849.10 G"


@pytest.mark.parametrize(("args", "message"), [
    (["info", "--depth", "42"], "unsupported depth '42': choose one of 18, 34, 50, 101, 152"),
    (["info", "--depth", "fifty"], "unsupported depth 'fifty': choose one of 18, 34, 50, 101, 152"),
    (["info", "--depth", "18", "--image-size", "16"], "16 is not in the range 32<=x<=4096"),
    (["info", "--depth", "18", "--variant", "v3"], "'v3' is not one of 'v1.5', 'v1'"),
    # tracebacks from TensorFlow ("Inputs have incompatible shapes", "out-of-range integer"), and an out-of-memory
    # line that blamed --image-size for --num-classes
    (["info", "--depth", "18", "--image-size", "99999999999999999999"],
     "'--image-size': 99999999999999999999 is not in the range 32<=x<=4096"),
    (["info", "--depth", "18", "--num-classes", "99999999999999999999"],
     "'--num-classes': 99999999999999999999 is not in the range 1<=x<=100000"),
    (["info", "--depth", "18", "--num-classes", "1000000000000"],
     "'--num-classes': 1000000000000 is not in the range 1<=x<=100000"),
    (["info", "--depth", "18", "--frobnicate"], "No such option '--frobnicate'"),
    (["info"], "Missing option '--depth'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_bad_input_is_one_line(capsys, args, message):
    code, out, err = _kres(capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("Error: ") and message in err


def _commands(group, ctx):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _commands(command, ctx)
        else:
            yield command


def test_every_image_size_and_num_classes_has_the_same_bounds():
    """--image-size 9223372036854775808 printed "multiply-adds 6929510119977990725369801474048.00 T"; each command
    bounded (or not) its own."""
    from kres.main import cli

    bounds = {}
    for command in _commands(cli, click.Context(cli)):
        for param in command.params:
            if param.name in ("image_size", "num_classes"):
                bounds.setdefault(param.name, set()).add((command.name, param.type.max))
    assert {name: {top for _, top in found} for name, found in bounds.items()} == {
        "image_size": {4096}, "num_classes": {100_000}}
    assert {command for command, _ in bounds["image_size"]} == {
        "info", "train", "predict", "evaluate", "convert-weights", "throughput", "tflite", "pipeline", "update"}


def test_console_script_and_no_top_level_cli_package(tmp_path):
    # Run from an empty directory so the source checkout is not on sys.path.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    probe = "import importlib.util as u; print(u.find_spec('kres') is not None, u.find_spec('cli') is None)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.stdout.split() == ["True", "True"]
    kres = os.path.join(os.path.dirname(sys.executable), "kres")
    result = subprocess.run([kres, "info", "--depth", "42"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: Invalid value for '--depth': unsupported depth '42': choose one of 18, 34, 50, 101, 152 "
        "(see 'kres info --help')"
    ]


def test_choice_lists_are_the_librarys_own():
    from keras_resnet import distribute, optim, specs
    from kres.bench import bench
    from kres.info import info
    from kres.train import train

    def choices(command, option):
        return tuple(next(p for p in command.params if p.name == option).type.choices)

    assert choices(train, "precision") == distribute.PRECISIONS
    assert choices(train, "optimizer") == optim.OPTIMIZERS
    assert choices(train, "stem") == choices(info, "stem") == specs.STEMS
    assert choices(bench.commands["throughput"], "precision") == specs.POLICIES


def test_output_has_the_short_form_o_in_every_command():
    """`-o` was export's and convert-weights' only: `kres train -o runs/a` was "No such option '-o'"."""
    import click

    from kres.main import cli

    def commands(group, path):
        for name in group.list_commands(None):
            command = group.get_command(None, name)
            if isinstance(command, click.Group):
                yield from commands(command, f"{path}{name} ")
            else:
                yield f"{path}{name}", command

    outputs = {name: sorted(param.opts) for name, command in commands(cli, "") for param in command.params
               if "--output" in param.opts}
    assert outputs == {name: ["--output", "-o"] for name in (
        "train", "evaluate", "export", "convert-weights", "bench time-to-accuracy")}
