"""Help and option errors answer before TensorFlow starts; NaN and infinity are refused; Ctrl-C says how to resume."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from processes import KRES, ctrl_c_as_at_a_terminal, kres_env

from keras_resnet.errors import KresError
from kres.main import main

_PROBE = (
    "import sys; from kres.main import main; rc = main(sys.argv[1:]); "
    "print('HEAVY', [m for m in ('tensorflow', 'keras') if m in sys.modules]); sys.exit(rc)"
)


def _parse_only(*args):
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    (["train", "--depth", "18", "--lr", "nan"], 2, "Invalid value for '--lr': 'nan' is not a finite number"),
    (["export", "--help"], 0, "--calibration-steps"),
    (["train", "--help"], 0, "--weight-decay"),
    (["train", "--epochs", "3"], 2, "Error: Missing option '--depth'. (see 'kres train --help')"),
    (["train", "--depth", "18", "--seed", "-1"], 2, "'--seed': -1 is not in the range 0<=x<=4294967295"),
    (["train", "--depth", "18", "--epochs", "100001"], 2, "'--epochs': 100001 is not in the range 1<=x<=100000"),
    # click's own said "'1.5' is not a valid integer range" (new-user walk)
    (["train", "--depth", "18", "--epochs", "1.5"], 2, "Invalid value for '--epochs': '1.5' is not a valid integer. "),
    (["export", "run", "-o", "out", "--eval-images", "x"], 2, "'--eval-images': 'x' is not a valid integer. "),
    (["train", "--help"], 0, "--epochs INTEGER "),
    (["evaluate", "a.keras", "--dataset", "digits", "--data-dir", "d"], 2, "--dataset and --data-dir are alternatives"),
    (["export", "run", "-o", "out", "--quantize", "int4"], 2, "unknown quantize mode 'int4'"),
    # 1 was taken here alone; the other commands need 32 (a ResNet halves its input five times)
    (["predict", "m.keras", "a.png", "--image-size", "1"], 2, "'--image-size': 1 is not in the range 32<=x<=4096"),
    # it made the int8 model alone without a word (float16 was refused)
    (["export", "run", "-o", "out", "--edgetpu", "--quantize", "float32"], 2,
     "--edgetpu makes an int8 model: drop --quantize float32"),
    (["export", "run", "-o", "out", "--quantize", "float32", "--edgetpu"], 2,
     "--edgetpu makes an int8 model: drop --quantize float32"),
])
def test_parse_errors_and_help_never_import_the_backend(args, code, message):
    rc, out, err = _parse_only(*args)
    assert rc == code, err
    assert message in out + err
    assert "HEAVY []" in out


def test_a_backend_keras_cannot_load_is_one_line(tmp_path):
    (tmp_path / "keras.json").write_text('{"backend": "jaxx"}')
    for env, named in (({"KERAS_BACKEND": "TensorFlow"}, "KERAS_BACKEND=TensorFlow"),
                       ({"KERAS_HOME": str(tmp_path)}, f"the backend in {tmp_path / 'keras.json'}")):
        environment = kres_env(**env)
        if "KERAS_HOME" in env:
            del environment["KERAS_BACKEND"]
        result = subprocess.run([*KRES, "info", "--depth", "18"], env=environment, capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(f"Error: Keras cannot load {named} (Unable to import backend : ")
        assert result.stderr.endswith("): set KERAS_BACKEND to tensorflow, jax or torch, one that is installed\n")
    # An installed backend that does not import (a broken TensorFlow) is not a choice to change: it needs repair.
    (tmp_path / "broken" / "tensorflow").mkdir(parents=True)
    (tmp_path / "broken" / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    result = subprocess.run([*KRES, "info", "--depth", "18"], capture_output=True, text=True, timeout=120,
                            env=kres_env(PYTHONPATH=str(tmp_path / "broken")), check=False)
    assert result.returncode == 2 and result.stderr == (
        "Error: Keras's backend (KERAS_BACKEND=tensorflow) fails to import: libcudart.so.12: cannot open shared "
        "object file; repair or reinstall that package, or set KERAS_BACKEND to another backend\n")


@pytest.mark.parametrize(("args", "message"), [
    (["trian"], "Error: No such command 'trian'. Did you mean 'train'? (see 'kres --help')"),
    (["bench", "thruput"], "Error: No such command 'thruput'. Did you mean 'throughput'? (see 'kres bench --help')"),
    (["xyz"], "Error: No such command 'xyz'. (see 'kres --help')"),
    (["evaluate", "m.keras", "--data-dir", "{file}"], "Error: Invalid value for '--data-dir': Directory '{file}' is "
                                                      "a file. (see 'kres evaluate --help')"),
    # a file as --tfds-dir was "--tfds-dir {file} does not exist"
    (["evaluate", "m.keras", "--dataset", "cifar10", "--tfds-dir", "{file}"],
     "Error: Invalid value for '--tfds-dir': Directory '{file}' is a file. (see 'kres evaluate --help')"),
    # an option without its value said "(see 'kres --help')", which lists no options (new-user walk)
    (["train", "--depth"], "Error: Option '--depth' requires an argument. (see 'kres train --help')"),
    (["export", "runs/a", "-o", "x", "--quantize"],
     "Error: Option '--quantize' requires an argument. (see 'kres export --help')"),
    (["bench", "throughput", "--depth"],
     "Error: Option '--depth' requires an argument. (see 'kres bench throughput --help')"),
    # an option of other commands only: click guessed a near name ("Did you mean '--batch-size'?": new-user walk)
    (["--depth"], "Error: kres has no option '--depth': it is an option of kres info, train, convert-weights, bench "
                  "throughput, bench time-to-accuracy and bench update (see 'kres --help')"),
    (["evaluate", "runs/a", "--quantize", "int8"],
     "Error: kres evaluate has no option '--quantize': it is an option of kres export (see 'kres evaluate --help')"),
    (["train", "--depht", "18"], "Error: No such option '--depht'. (Did you mean one of: '--depth', '--epochs', "
                                 "'--weights'?) (see 'kres train --help')"),
    (["bench", "tflite", "--depth", "18"],  # a near spelling of its own --depths: click's guess stays
     "Error: No such option '--depth'. Did you mean '--depths'? (see 'kres bench tflite --help')"),
    (["evaluate", "m.keras", "--no-xla"],
     "Error: kres evaluate has no option '--no-xla': it is an option of kres train and bench throughput (see 'kres "
     "evaluate --help')"),
])
def test_misspelt_commands_and_a_file_for_a_folder(capsys, tmp_path, args, message):
    (tmp_path / "photo.png").write_bytes(b"")
    assert main([arg.format(file=tmp_path / "photo.png") for arg in args]) == 2
    assert capsys.readouterr().err == message.format(file=tmp_path / "photo.png") + "\n"


@pytest.mark.parametrize(("args", "option"), [
    (["export", "runs/a", "-o", ""], "'--output' / '-o'"),  # it wrote the export into the current folder
    (["train", "--depth", "18", "--data-dir", ""], "'--data-dir'"),  # it scanned the current folder as the data
    (["predict", "runs/a", ""], "'IMAGES...'"),
    (["evaluate", "runs/a", "--output", " "], "'--output' / '-o'"),
])
def test_an_empty_path_is_refused_while_parsing(capsys, args, option):
    assert main(args) == 2
    assert capsys.readouterr().err == (f"Error: Invalid value for {option}: is empty: give a file or folder name (see "
                                       f"'kres {args[0]} --help')\n")


def test_a_closed_stdout_pipe_ends_the_command_quietly(monkeypatch, capsys):
    """``kres info | head -1``: the reader took what it wanted. click's own answer was exit status 1, silent."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone: a write raises BrokenPipeError (Python ignores SIGPIPE)
    with open(write, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert main(["info", "--depth", "18"]) == 0
        monkeypatch.undo()
    assert capsys.readouterr().err == ""
    read, write = os.pipe()
    os.close(read)
    stderr = open(write, "w")  # noqa: SIM115 (closed below, once its unwritable text is dropped)
    monkeypatch.setattr(sys, "stderr", stderr)  # stderr's reader gone: an error that cannot be said still fails
    assert main(["train", "--depth", "18", "--epochs", "0"]) == 2  # as said: a usage error (click's 1 before)
    monkeypatch.undo()
    os.dup2(os.open(os.devnull, os.O_WRONLY), write)
    stderr.close()


@pytest.mark.parametrize("args", [[], ["bench"]])
def test_a_group_alone_prints_its_help_not_an_error(capsys, args):
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"Usage: kres {' '.join(args)}{' ' if args else ''}[OPTIONS] COMMAND [ARGS]...") and err == ""
    assert "  train " in out if not args else "  throughput " in out


@pytest.mark.parametrize("option", ["--lr", "--weight-decay", "--warmup-epochs", "--label-smoothing", "--mixup",
                                    "--cutmix", "--val-split"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_float_options_refuse_nan_and_infinity(capsys, option, value):
    code = main(["train", "--depth", "18", option, value])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (f"Error: Invalid value for '{option}': '{value}' is not a finite number "
                           f"(see 'kres train --help')")


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--depth", "18", "--lr", "0"], "'0' is not in the range 0<x"),
    # NumPy's "overflow encountered in cast" warning, and "cannot write r1/config.json: a value is not a finite number"
    (["train", "--depth", "18", "--lr", "1e300"], "Error: Invalid value for '--lr': '1e300' is not in the range "
                                                  "0<x<=1000000000 (see 'kres train --help')\n"),
    (["train", "--depth", "18", "--lr", "1e308"], "'--lr': '1e308' is not in the range 0<x<=1000000000 "),
    (["train", "--depth", "18", "--val-split", "1"], "'1' is not in the range 0<x<1"),
    (["train", "--depth", "18", "--label-smoothing", "1.0"], "'1.0' is not in the range 0<=x<=0.999999"),
    # float32 made both 1: every target uniform, and an average that never left the first step's weights
    (["train", "--depth", "18", "--label-smoothing", "0.99999999999"], "Error: Invalid value for '--label-smoothing': "
     "'0.99999999999' is not in the range 0<=x<=0.999999 (see 'kres train --help')\n"),
    (["train", "--depth", "18", "--ema", "0.99999999999"], "Error: Invalid value for '--ema': '0.99999999999' is not "
     "in the range 0<=x<=0.999999 (see 'kres train --help')\n"),
    # 4 learned nothing without a word; 1e9 diverged blaming --lr; 1e300 printed NumPy's "overflow encountered in cast"
    (["train", "--depth", "18", "--weight-decay", "4"], "Error: Invalid value for '--weight-decay': '4' is not in "
     "the range 0<=x<=1 (see 'kres train --help')\n"),
    (["train", "--depth", "18", "--weight-decay", "1e300"], "'--weight-decay': '1e300' is not in the range 0<=x<=1 "),
    # refused only once TensorFlow was loaded, as "the whole run of --epochs 10" (the recipe's)
    (["train", "--depth", "18", "--warmup-epochs", "1e300"], "Error: Invalid value for '--warmup-epochs': '1e300' is "
     "not in the range 0<=x<100000 (see 'kres train --help')\n"),
    # every batch blended half and half (TensorFlow's gamma draws stop at float32's least normal number)
    (["train", "--depth", "18", "--mixup", "1e-6"], "Error: Invalid value for '--mixup': '1e-6' is neither 0 (off) "
     "nor in the range 0.05<=x<=1000 (see 'kres train --help')\n"),
    # a NaN blend: the loss became NaN at step 1, blamed on --lr
    (["train", "--depth", "18", "--mixup", "1e300"], "'--mixup': '1e300' is neither 0 (off) nor in the range "
     "0.05<=x<=1000 "),
    (["train", "--depth", "18", "--cutmix", "1001"], "'--cutmix': '1001' is neither 0 (off) nor in the range "
     "0.05<=x<=1000 "),
    (["bench", "time-to-accuracy", "--target", "nan"], "(see 'kres bench time-to-accuracy --help')"),
])
def test_float_ranges_are_checked_while_parsing(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_float_bounds_themselves_are_taken():
    from kres.train import train

    args = ["--depth", "18", "--weight-decay", "1", "--warmup-epochs", "99999.5", "--label-smoothing", "0.999999",
            "--ema", "0.999999", "--mixup", "0.05", "--cutmix", "1000"]
    params = train.make_context("train", args).params
    assert [params[k] for k in ("weight_decay", "warmup_epochs", "label_smoothing", "ema", "mixup", "cutmix")] == \
        [1.0, 99999.5, 0.999999, 0.999999, 0.05, 1000.0]
    assert train.make_context("train", ["--depth", "18", "--mixup", "0"]).params["mixup"] == 0.0


@pytest.mark.parametrize(("args", "message"), [
    # TFDS's "Parsing builder name string  failed."
    (["train", "--depth", "18", "--dataset", "", "-o", "r1"], "Invalid value for '--dataset': is empty: give a TFDS "
     "name (cifar10, ...), 'synthetic' or 'digits' (see 'kres train --help')"),
    (["evaluate", "run", "--dataset", " "], "Invalid value for '--dataset': is empty: give a TFDS name (cifar10, ...), "
     "'synthetic' or 'digits' (see 'kres evaluate --help')"),
    (["export", "run", "-o", "out", "--dataset", ""], "Invalid value for '--dataset': is empty: give a TFDS name "
     "(cifar10, ...), 'synthetic' or 'digits' (see 'kres export --help')"),
    # these two lacked the --help hint and the option's name that every other refused choice has
    (["export", "run", "-o", "out", "--quantize", "int4"], "Invalid value for '--quantize': unknown quantize mode "
     "'int4': choose one of float32, float16, dynamic, int8 (see 'kres export --help')"),
    (["export", "run", "-o", "out", "--io-dtype", "float"], "Invalid value for '--io-dtype': unknown --io-dtype "
     "'float': choose one of uint8, int8 (see 'kres export --help')"),
])
def test_empty_datasets_and_unknown_choices_are_refused_while_parsing(capsys, args, message):
    assert main(args) == 2
    assert capsys.readouterr().err == f"Error: {message}\n"


@pytest.mark.parametrize(("command", "text"), [
    ("train", "--weights TEXT 'imagenet', a weights file, or a run or export folder (its best.keras, else last.keras, "
              "else model.keras) to start from"),  # it said "its best.keras or model.keras"
    ("convert-weights", "A .keras file, or a run or export folder (its best.keras, else last.keras, else model.keras), "
                        "is made again at"),
    ("train", "--val-split FLOAT Fraction held out for validation when the data has no validation split (above 0, "
              "below 1)."),
    ("export", "--dataset TEXT A TFDS name, 'synthetic' or 'digits' for them"),  # it said "(or 'digits')"
    ("train", "--weight-decay FLOAT On conv/dense kernels only (never BN or biases): each step shrinks them by the "
              "learning rate times this (at most 1)."),
    ("train", "--warmup-epochs FLOAT Linear warmup before the cosine decay; shorter than --epochs."),
    ("train", "--mixup FLOAT Mixup alpha (0: off, else 0.05 to 1,000)."),
])
def test_help_says_what_the_option_takes(capsys, command, text):
    assert main([command, "--help"]) == 0
    assert " ".join(text.split()) in " ".join(capsys.readouterr().out.replace("-\n", "-").split())


def test_help_texts_read_the_folder_models_order_from_runs():
    """The order a run or export folder's model is picked in was written out by hand in each command's help, apart
    from runs.FOLDER_MODELS, which picks it."""
    from keras_resnet.runs import FOLDER_MODELS
    from kres.options import FOLDER_MODEL_ORDER

    assert ", else ".join(FOLDER_MODELS) == FOLDER_MODEL_ORDER
    spelled = [path.name for path in (Path(__file__).parents[1] / "cli").glob("*.py")
               if "best.keras, else" in " ".join(path.read_text().replace('"', " ").split())]
    assert spelled == []


@pytest.mark.parametrize(("field", "option"), [("lr", "--lr"), ("weight_decay", "--weight-decay"),
                                               ("warmup_epochs", "--warmup-epochs"), ("mixup_alpha", "--mixup")])
def test_library_validation_refuses_nan(field, option):
    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig, resolve

    cfg, data = TrainConfig(depth=18), DataConfig()
    if field == "mixup_alpha":
        data = DataConfig(mixup_alpha=math.nan)
    else:
        cfg = TrainConfig(depth=18, **{field: math.inf if field == "lr" else math.nan})
    with pytest.raises(KresError, match=f"{option} must be a finite number"):
        resolve(cfg, data)


def test_write_json_refuses_nan_and_writes_nothing(tmp_path):
    from keras_resnet import fileio

    path = tmp_path / "config.json"
    with pytest.raises(KresError, match=r"config\.json: a value is not a finite number"):
        fileio.write_json(path, {"lr": math.nan})
    assert not path.exists() and list(tmp_path.iterdir()) == []
    fileio.write_json(path, {"lr": 0.1})
    assert json.loads(path.read_text()) == {"lr": 0.1}


def test_ctrl_c_in_export_says_what_it_left(capsys, monkeypatch, tmp_path):
    import keras_resnet.export

    def interrupted(cfg, progress):
        progress("converting to TFLite (int8)")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_resnet.export, "export", interrupted)
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "out"), "--tflite"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "... converting to TFLite (int8)",
        "",  # click ends the line the terminal's ^C is on
        f"Aborted. Nothing of this export was moved into {tmp_path / 'out'} (an earlier export there is whole); run "
        "the same command again to export."]


def test_a_warning_the_progress_showed_is_printed_once_on_a_terminal(capsys, monkeypatch, tmp_path):
    """Each int8 export's input-range warning was on the terminal twice: a progress line, then the report's line."""
    import keras_resnet.export

    warning = "warning: model_int8.tflite takes pixels up to 252 only (its calibration images were no brighter)"

    def export(cfg, progress):
        progress(warning)
        return SimpleNamespace(text=f"ResNet-18 v1.5 from x\n{warning}\nwarning: said by no progress line\n", files=[],
                               output_dir=tmp_path / "out")

    monkeypatch.setattr(keras_resnet.export, "export", export)
    report = ["ResNet-18 v1.5 from x", warning, "warning: said by no progress line",
              f"wrote 0 artifacts and export_report.json/.txt to {tmp_path / 'out'}"]
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.splitlines() == report  # redirected: the report whole
    for stream in (sys.stdout, sys.stderr):
        monkeypatch.setattr(stream, "isatty", lambda: True, raising=False)
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr()
    assert shown.err.splitlines() == [f"... {warning}"]
    assert shown.out.splitlines() == [line for line in report if line != warning]


@pytest.mark.parametrize("moved_in, said", [
    # the Ctrl-C waited for the moves; it said "Nothing of this export was moved into OUT"
    ("all", "The export was written whole into {out} first; its report is export_report.txt there."),
    # a second Ctrl-C cut the moves short: the folder holds files of both exports
    ("some", "Some of this export's files were moved into {out}, beside the earlier export's: run the same "
             "command again to finish it."),
])
def test_ctrl_c_while_an_export_is_moved_in_says_what_the_folder_holds(capsys, monkeypatch, tmp_path, moved_in,
                                                                        said):
    import keras_resnet.export

    def moved_then_interrupted(cfg, progress):
        stop = KeyboardInterrupt()
        stop.moved_in = moved_in  # as fileio.staged_dir marks it
        raise stop

    monkeypatch.setattr(keras_resnet.export, "export", moved_then_interrupted)
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "out"), "--tflite"]) == 130
    assert capsys.readouterr().err.splitlines() == ["", "Aborted. " + said.format(out=tmp_path / "out")]


def test_ctrl_c_in_predict_does_not_speak_of_files(capsys, monkeypatch, tmp_path):
    """It said "The files written so far are whole ... run the same command again to finish": predict writes none."""
    import keras_resnet.predict

    def interrupted(cfg, say):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_resnet.predict, "predict", interrupted)
    assert main(["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.png")]) == 130
    assert capsys.readouterr().err.splitlines() == ["", "Aborted. predict writes no files: nothing to finish."]


def _checkpointed(run, state: dict | None) -> None:
    """A run folder as kres train leaves it: its config (16 steps in all), and a checkpoint state."""
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"resolved": {"total_steps": 16}}))
    if state is not None:
        (run / "checkpoint" / "state.json").write_text(state if isinstance(state, str) else json.dumps(state))


@pytest.mark.parametrize("output", [True, False])
@pytest.mark.parametrize("state, said", [
    ({"steps": 8, "weights": "ckpt-8.weights.h5", "complete": False}, "To resume from step 8 of 16"),
    # it said "To resume", and the rerun started over without a word
    (None, "Nothing was checkpointed yet: run the same command again to start over."),
    # it said "To resume" of a run that had trained every step (Ctrl-C while its last files were written)
    ({"steps": 16, "weights": None, "complete": True}, "It had trained every step; run the same command again, or "),
    ({"steps": 16, "weights": "ckpt-16.weights.h5", "complete": False}, "It had trained every step; run the same "),
    # unreadable: what the next command says, not "Nothing was checkpointed yet: ... start over"
    ("{garbage", "{run}/checkpoint/state.json cannot be read ("),
])
def test_ctrl_c_in_train_says_what_was_kept_and_how_to_resume(capsys, monkeypatch, tmp_path, output, state, said):
    import keras_resnet.train

    run = tmp_path / ("myrun" if output else "runs/r1")

    def interrupted(cfg, data, on_run_dir):
        # the run has written its config (and moved runs/latest) when the key is pressed
        on_run_dir(Path("myrun") if output else Path("runs/r1"))  # as train chose it
        _checkpointed(run, state)
        if not output:
            (tmp_path / "runs" / "latest").symlink_to("r1")
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keras_resnet.train, "train", interrupted)
    args = ["train", "--depth", "18"] + (["--output", "myrun"] if output else [])
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err.startswith("\nAborted.")  # the line of the live bar (and the terminal's ^C) ended first
    err = err.strip()
    shown = run if output else (tmp_path / "runs" / "r1").resolve()
    assert err.startswith(f"Aborted. {said.format(run=shown)}"), err
    if isinstance(state, dict) and state["steps"] == 8:  # absolute: the command resumes from any folder
        assert err.endswith(f"run the same command again, or: kres train --resume --output {run}" if output
                            else f"step 8 of 16: kres train --resume --output {run}")
    if isinstance(state, dict) and state["steps"] == 16:
        assert err.endswith(f"kres train --resume --output {run}, to write what is left.")


def test_ctrl_c_before_a_named_run_has_its_config_says_to_start_over(capsys, monkeypatch, tmp_path):
    """It said "kres train --resume --output myrun", which answered that myrun holds no run."""
    import keras_resnet.train

    def interrupted(cfg, data, on_run_dir):
        on_run_dir(Path(cfg.output))
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keras_resnet.train, "train", interrupted)
    assert main(["train", "--depth", "18", "--output", "myrun"]) == 130
    assert capsys.readouterr().err.strip() == (
        "Aborted. Nothing was checkpointed yet: run the same command again to start over.")


def test_ctrl_c_in_a_resumed_run_names_the_run(capsys, monkeypatch, tmp_path):
    """``kres train --resume`` continues runs/latest, whose config.json is older than the command: the hint
    still names the run (it said "Nothing was checkpointed yet")."""
    import keras_resnet.train

    def interrupted(cfg, data, on_run_dir):
        on_run_dir(Path(cfg.output))
        raise KeyboardInterrupt

    run = tmp_path / "runs" / "r1"
    _checkpointed(run, {"steps": 8, "weights": "ckpt-8.weights.h5"})
    os.utime(run / "config.json", (0, 0))
    (tmp_path / "runs" / "latest").symlink_to("r1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keras_resnet.train, "train", interrupted)
    assert main(["train", "--resume"]) == 130
    assert capsys.readouterr().err.strip() == (
        f"Aborted. To resume from step 8 of 16, run the same command again, or: kres train --resume --output {run}")


def test_ctrl_c_names_its_own_run_though_another_has_moved_runs_latest(capsys, monkeypatch, tmp_path):
    """Two runs without --output in one folder: the first, interrupted, named the second (runs/latest, moved by it)
    and its step, or said "Nothing was checkpointed yet" where the second had none (walk)."""
    import keras_resnet.train

    mine, other = tmp_path / "runs" / "r1", tmp_path / "runs" / "r2"
    _checkpointed(mine, {"steps": 8, "weights": "ckpt-8.weights.h5"})
    _checkpointed(other, None)  # started later: newer, and runs/latest points to it
    (tmp_path / "runs" / "latest").symlink_to("r2")

    def interrupted(cfg, data, on_run_dir):
        on_run_dir(Path("runs/r1"))
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keras_resnet.train, "train", interrupted)
    assert main(["train", "--depth", "18"]) == 130
    assert capsys.readouterr().err.strip() == (f"Aborted. To resume from step 8 of 16: kres train --resume --output "
                                               f"{mine}")

    def before_choosing(cfg, data, on_run_dir):  # no run folder yet: nothing of this run is kept
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_resnet.train, "train", before_choosing)
    (other / "checkpoint" / "state.json").write_text(json.dumps({"steps": 8, "weights": "ckpt-8.weights.h5"}))
    assert main(["train", "--depth", "18"]) == 130
    assert capsys.readouterr().err.strip() == (
        "Aborted. Nothing was checkpointed yet: run the same command again to start over.")


def test_an_error_during_the_live_bar_gets_a_line_of_its_own(capsys, monkeypatch):
    """"... top5 0.9943Error: cannot write to runs/u1 ...": the error went on after the bar (walk)."""
    import keras_resnet.train
    from keras_resnet import terminal

    def failing(cfg, data, on_run_dir):
        sys.stderr.write("\rEpoch 2/3 [======..................] 5/22 300 img/s\x1b[K")
        terminal.live_line(True)  # as the bar marks it on a terminal
        raise KresError("cannot write to runs/u1: Operation not permitted")

    monkeypatch.setattr(keras_resnet.train, "train", failing)
    assert main(["train", "--depth", "18"]) == 2
    assert capsys.readouterr().err == ("\rEpoch 2/3 [======..................] 5/22 300 img/s\x1b[K\n"
                                       "Error: cannot write to runs/u1: Operation not permitted\n")
    def failing_before_the_bar(cfg, data, on_run_dir):
        raise KresError("x")

    monkeypatch.setattr(keras_resnet.train, "train", failing_before_the_bar)
    assert main(["train", "--depth", "18"]) == 2 and capsys.readouterr().err == "Error: x\n"  # no bar: no blank line


@pytest.fixture(scope="module")
def tf_out_of_memory():
    """TensorFlow's own error for a tensor that cannot be allocated: 2^48 bytes, beyond any address space, so
    it fails whatever the machine lets a process reserve; after 10 s, not at once: TensorFlow's CPU allocator waits
    that long for memory to be freed before it gives up (2^34 to 2^46 bytes alike, Intel Xeon, December 2026)."""
    import tensorflow as tf

    with pytest.raises(tf.errors.ResourceExhaustedError) as caught:
        tf.zeros([2 ** 46])
    return caught.value


def test_a_batch_whose_first_activations_alone_outgrow_the_memory_is_refused_before_anything(capsys, tmp_path):
    """--image-size 4096 read and measured its images for minutes without a line, then TensorFlow crashed: a
    segmentation fault, no error (new-user walk). A batch of 4096 such images outgrows any machine's memory."""
    import os

    from keras_resnet.specs import largest_activation

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert main(["train", "--depth", "18", "--stem", "cifar", "--image-size", "4096", "--batch-size", "4096",
                 "--dataset", "synthetic", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "Error: at --image-size 4096 and --batch-size 4096, one activation of ResNet-18 (4096 images of 4096x4096x64) "
        f"alone needs 16,384.0 GiB, more than this machine's {memory:.1f} GiB: lower --batch-size or --image-size"]
    assert list(tmp_path.iterdir()) == []
    assert largest_activation(18, "imagenet", 225) == (113 * 113 * 64, "113x113x64")  # conv1, 7x7/2
    assert largest_activation(50, "cifar", 32) == (32 * 32 * 256, "32x32x256")  # the first bottleneck stage
    assert largest_activation(50, "imagenet", 224) == (112 * 112 * 64, "112x112x64")  # equal: 56x56x256


@pytest.mark.parametrize(("args", "fix"), [
    (["train", "--depth", "152", "--batch-size", "256"],
     "run again with a smaller --batch-size or --image-size and a new --output"),
    (["bench", "throughput", "--batch-size", "256"], "run again with a smaller --batch-size or --image-size"),
    (["bench", "tflite"], "run again with a smaller --image-size"),
    (["export", "run", "-o", "out", "--tflite"], "close what else uses the memory, or run it on a machine with more"),
])
def test_out_of_memory_is_one_line_naming_the_tensor_and_the_fix(capsys, monkeypatch, tf_out_of_memory, args, fix):
    import kres.main

    def run_out(*_args, **_kwargs):
        raise tf_out_of_memory

    monkeypatch.setattr(kres.main.cli, "main", run_out)
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines() == [
        "Error: out of memory (OOM when allocating tensor with shape[70368744177664] and type float on "
        "/job:localhost/replica:0/task:0/device:CPU:0 by allocator "
        f"{tf_out_of_memory.message.split(' by allocator ')[1].split()[0]} [Op:Fill]): {fix}"]


# TensorFlow 2.21's error for a bfloat16 convolution in model.fit with oneDNN capped at AVX2 on an Intel Xeon with
# AVX-512 BF16 (`ONEDNN_MAX_CPU_ISA=AVX2 kres train --precision mixed_bfloat16`, 2026-12-05): a traceback before.
_ONEDNN_ABORTED = (
    "Graph execution error:\n\nDetected at node StatefulPartitionedCall/resnet18_1/conv1_conv_1/convolution defined "
    "at (most recent call last):\n<stack traces unavailable>\nOperation received an exception:Status: 3, message: "
    "could not create a primitive descriptor for the convolution forward propagation primitive. Run workload with "
    "environment variable ONEDNN_VERBOSE=all to get additional diagnostic information., in file "
    "tensorflow/core/kernels/mkl/mkl_conv_ops.cc:1112\n\t [[{{node StatefulPartitionedCall/resnet18_1/conv1_conv_1/"
    "convolution}}]] [Op:__inference_multi_step_on_iterator_7819]")


@pytest.mark.parametrize(("cap", "line"), [
    ("AVX2", "Error: oneDNN has no convolution forward propagation kernel for this data type with "
             "ONEDNN_MAX_CPU_ISA=AVX2: unset ONEDNN_MAX_CPU_ISA, or leave --precision out to run in float32"),
    (None, "Error: oneDNN has no convolution forward propagation kernel for this data type on this CPU: leave "
           "--precision out to run in float32, or set TF_ENABLE_ONEDNN_OPTS=0 for TensorFlow's own kernels"),
])
def test_a_kernel_onednn_lacks_is_one_line_with_the_fix(capsys, monkeypatch, cap, line):
    import tensorflow as tf

    import kres.main

    def aborted(*_args, **_kwargs):
        raise tf.errors.AbortedError(None, None, _ONEDNN_ABORTED)

    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(kres.main.cli, "main", aborted)
    assert main(["train", "--depth", "18", "--precision", "mixed_bfloat16"]) == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_train_options_that_would_be_ignored_are_refused(capsys, tmp_path, monkeypatch):
    """--val-split with a folder that has val/, and --tfds-dir with --data-dir, were ignored without a word."""
    monkeypatch.chdir(tmp_path)  # where runs/ would be made
    for split in ("train", "val"):
        (tmp_path / "photos" / split / "a").mkdir(parents=True)
    photos = str(tmp_path / "photos")
    assert main(["train", "--depth", "18", "--data-dir", photos, "--val-split", "0.5"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: {photos} has train/ and val/, and --val-split splits a folder that has no val/: drop --val-split"]
    assert main(["train", "--depth", "18", "--data-dir", photos, "--tfds-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "Error: --tfds-dir says where TFDS datasets are, and --data-dir reads image folders: drop --tfds-dir"]
    # ignored too: --tfds-dir with the built-in data, --val-split with synthetic data (its own validation set)
    for dataset in ([], ["--dataset", "digits"], ["--dataset", "synthetic"]):
        assert main(["train", "--depth", "18", *dataset, "--tfds-dir", str(tmp_path)]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"Error: --tfds-dir says where TFDS datasets are, and {dataset[1] if dataset else 'digits'} is built in: "
            "drop --tfds-dir, or name a TFDS dataset with --dataset"]
    assert main(["train", "--depth", "18", "--dataset", "synthetic", "--val-split", "0.5"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "Error: --dataset synthetic has a validation set of its own: drop --val-split"]
    assert not (tmp_path / "runs").exists() and not list((tmp_path / "photos").glob("*/*/*"))


def test_weights_messages_name_the_options_at_the_command_line(capsys, tmp_path):
    """The library's wording reached the terminal: "pass weights=PATH with variant='v1.5' ... or use variant='v1'"."""
    from kres.main import _as_options

    assert main(["train", "--depth", "18", "--weights", "imagenet", "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("Error: --weights imagenet downloads keras.applications' v1 files "
                                               "only: for v1.5 download torchvision's resnet18-f37072fd.pth ")
    assert "and pass --weights PATH with --variant v1.5 (or convert it once: kres convert-weights" in err[0]
    assert err[0].endswith("; or use --variant v1 (depth 50, 101, 152)") and "=" not in err[0].split("(http")[0]
    assert _as_options("weights=PATH, weights='a b.h5', variant='v1', dropout=0.2, depth=18, weights=0") == (
        "--weights PATH, --weights a b.h5, --variant v1, dropout=0.2, --depth 18, weights=0")
    # only the library's own words: not a path, nor an option the user typed (a review, 2026-12-06)
    unchanged = "runs/depth=50/best.keras, --depth=50, depth=18.5, lr=0.1,depth=50, weights='', x_depth=3"
    assert _as_options(unchanged) == unchanged
    assert _as_options("pass depth=18. (depth=34) weights=PATH") == "pass --depth 18. (--depth 34) --weights PATH"


def test_the_oom_line_is_found_below_tensorflows_graph_header():
    import tensorflow as tf

    from keras_resnet.errors import out_of_memory

    in_fit = tf.errors.ResourceExhaustedError(None, None, (
        "Graph execution error:\n\nDetected at node StatefulPartitionedCall defined at (most recent call last):\n"
        "  File \"train.py\", line 341, in _fit_phases\n\n{{function_node __inference_one_step_on_data_1234}} "
        "OOM when allocating tensor with shape[256,64,112,112] and type float on "
        "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc\n\t [[{{node conv1_conv/Conv2D}}]]"))
    assert out_of_memory(in_fit) == ("OOM when allocating tensor with shape[256,64,112,112] and type float on "
                                     "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")


def test_a_full_disk_in_tensorflows_out_of_memory_type_is_not_called_out_of_memory():
    import tensorflow as tf

    from keras_resnet.errors import out_of_memory

    with pytest.raises(tf.errors.ResourceExhaustedError) as caught, tf.io.gfile.GFile("/dev/full", "w") as full:
        full.write("x" * 100_000)
    assert "No space left on device" in str(caught.value)
    assert out_of_memory(caught.value) is None
    too_large = RuntimeError("RESOURCE_EXHAUSTED: Received message larger than max (5000000 vs. 4194304)")
    assert out_of_memory(too_large) is None  # gRPC's: the same status, not memory


def test_out_of_memory_under_jax_and_on_the_host_is_read_and_other_errors_are_not(capsys, monkeypatch):
    import kres.main
    from keras_resnet.errors import out_of_memory

    jax_oom = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3288334336 bytes.")
    assert out_of_memory(jax_oom) == "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3288334336 bytes."
    assert out_of_memory(MemoryError()) == "host memory"
    assert out_of_memory(MemoryError("Unable to allocate 96.0 GiB for an array")) == (
        "host memory: Unable to allocate 96.0 GiB for an array")
    assert out_of_memory(RuntimeError("a tensor ran out of patience")) is None

    def crash(**_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(kres.main.cli, "main", crash)
    with pytest.raises(RuntimeError, match="boom"):  # a bug stays a traceback, to be reported
        main(["info", "--depth", "18"])


def test_train_needs_depth_unless_resuming_but_not_while_a_shell_completes():
    from kres.train import train

    with pytest.raises(click.MissingParameter) as caught:
        train.make_context("train", ["--epochs", "3"])
    assert caught.value.format_message() == "Missing option '--depth'."
    assert train.make_context("train", ["--resume", "--output", "r"]).params["depth"] is None
    assert train.make_context("train", ["--ep"], resilient_parsing=True).params["depth"] is None


_SWALLOWED = """
import os, signal, sys, weakref
from kres.main import Terminated, _sigterm_as_interrupt

class Thing:
    pass

def callback(_):  # the signal's handler runs inside it, where Python can only print what it raises and drop it
    os.kill(os.getpid(), signal.{signal})
    sum(range(1000))

with _sigterm_as_interrupt():
    try:
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        sum(range(10**8))
        print("ran on", flush=True)
    except {raised}:
        print("interrupted", flush=True)
    {after}
"""
_SECOND_SIGTERM = """os.kill(os.getpid(), signal.SIGTERM)  # unwound once: a second one while cleaning up is ignored
    print("cleaned up", flush=True)"""


@pytest.mark.parametrize("name, raised, after, printed", [
    # 1 in 7 during an export's conversion: the export ran to its end, exit 0, and ignored every later SIGTERM
    ("SIGTERM", "Terminated", _SECOND_SIGTERM, "interrupted\ncleaned up\n"),
    # JAX's garbage-collector hook took a Ctrl-C in 2 of 6 interrupted exports: 'Exception ignored in
    # _xla_gc_callback ... KeyboardInterrupt', and the export ran to its end, exit 0
    ("SIGINT", "KeyboardInterrupt", "", "interrupted\n"),
])
def test_a_signal_raised_inside_a_callback_is_not_lost(name, raised, after, printed):
    script = _SWALLOWED.format(signal=name, raised=raised, after=after)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            preexec_fn=ctrl_c_as_at_a_terminal)
    assert (result.returncode, result.stdout) == (0, printed), result.stderr


_DROPPED_AT_THE_END = """
import signal, sys, time, types
from kres.main import Terminated, _sigterm_as_interrupt

with _sigterm_as_interrupt() as interrupts:
    sys.unraisablehook(types.SimpleNamespace(exc_value={raised}()))  # dropped in a callback, as the command ends
print(int(interrupts.dropped), flush=True)
time.sleep(0.5)  # nothing is sent after the block: the caller (a library user, a test) goes on
print("went on", flush=True)
"""


@pytest.mark.parametrize("raised, number", [("Terminated", 15), ("KeyboardInterrupt", 2)])
def test_a_dropped_signal_is_the_exit_status_and_is_not_sent_after_the_command(raised, number):
    """The signal was sent again 10 ms later by a timer nothing cancelled: a Ctrl-C raised in the caller after
    main() had returned, a SIGTERM killed it with no word said."""
    result = subprocess.run([sys.executable, "-c", _DROPPED_AT_THE_END.format(raised=raised)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"{number}\nwent on\n"), result.stderr


def test_a_command_that_ends_with_a_dropped_signal_exits_as_interrupted(monkeypatch, capsys):
    import kres.main as kres_main

    def ends_with_a_dropped_sigterm(args):
        sys.unraisablehook(SimpleNamespace(exc_value=kres_main.Terminated()))
        return 0

    monkeypatch.setattr(kres_main, "_main", ends_with_a_dropped_sigterm)
    assert main(["info", "--depth", "18"]) == 128 + 15
    assert capsys.readouterr().err == f"Terminated. {kres_main.INTERRUPTED}\n"


_PROGRESS_READER_GONE = """
import os, sys
from kres.main import _stderr_may_go

read, write = os.pipe()
os.close(read)
os.dup2(write, 2)  # `kres export ... 2>&1 | head -2`: the reader of the progress lines is gone
with _stderr_may_go():
    for step in range(3):
        print(f"... step {step}", file=sys.stderr, flush=True)
    print("wrote the artifacts", flush=True)
"""


def test_progress_whose_reader_is_gone_does_not_stop_the_work():
    """The export stopped at its first progress line past `head -2`, with exit status 0 and no models written."""
    result = subprocess.run([sys.executable, "-c", _PROGRESS_READER_GONE], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout) == (0, "wrote the artifacts\n")


def test_the_closing_line_of_train_names_the_best_epoch(monkeypatch, capsys, tmp_path):
    """It said "best val top-1 1.0000 after 2 epochs", which read as the last epoch's (new-user walk)."""
    from pathlib import Path

    from keras_resnet import train as train_module

    def trained(cfg, data, on_run_dir):
        rows = [{"epoch": epoch, "val_accuracy": value} for epoch, value in ((1, 0.9), (2, 0.95), (3, 0.95))]
        return train_module.TrainResult(Path("runs/r"), Path("runs/r/best.keras"), Path("runs/r/last.keras"), rows[-1],
                                        0.95, 3, 36, 36, history=rows)

    monkeypatch.setattr(train_module, "train", trained)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--depth", "18", "--epochs", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "runs/r: best val top-1 0.9500 at epoch 2 (of 3 epochs, 36 steps); best model runs/r/best.keras")
