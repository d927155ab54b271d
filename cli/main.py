"""``kres``: the command group. Subcommands are imported only when run, and Keras/TensorFlow only once a
command's options are parsed and checked, so help and option errors answer at once."""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import importlib
import importlib.util
import os
import re
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version

import click

from kres.options import SuggestingGroup

# Quiet TensorFlow's C++ start-up chatter for every command; a user can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name -> (module under kres, function, one-line help). A command whose module is not installed is hidden.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "info": ("kres.info", "info", "Layers, parameters, multiply-adds and stage shapes of a ResNet."),
    "train": ("kres.train", "train", "Train a ResNet on a TFDS dataset, an image folder or the built-in digits."),
    "evaluate": ("kres.evaluate", "evaluate", "Top-1/5, loss, confusion matrix of .keras, SavedModel or .tflite."),
    "predict": ("kres.predict", "predict", "Top-k labels of images with a trained or exported model."),
    "export": ("kres.export", "export", "SavedModel, TFLite (float, float16, dynamic, int8, QAT) and Edge TPU."),
    "convert-weights": ("kres.convert_weights", "convert_weights", "Turn a torchvision checkpoint into a .keras file."),
    "bench": ("kres.bench", "bench", "Benchmarks against peers, run in the same command."),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class LazyGroup(SuggestingGroup):
    def list_commands(self, ctx):
        return [name for name, (module, _, _) in COMMANDS.items() if _installed(module)]

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _installed(COMMANDS[name][0]):
            return None
        module, attr, _ = COMMANDS[name]
        return _backend_after_parsing(getattr(importlib.import_module(module), attr))

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version() -> str:
    try:
        return version("keras-resnet")
    except PackageNotFoundError:
        return "unknown"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="kres")
def cli() -> None:
    """kres: train, evaluate, quantize and export ResNets for phones and Edge TPUs."""


# Lines TensorFlow's C++ runtime prints at import time whatever TF_CPP_MIN_LOG_LEVEL says.
_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|I0000 .*\] |To enable the following instructions:"
    r"|E0000 .*cuda_platform.cc.*failed call to cuInit: .*\(303\))"  # 303: no NVIDIA driver, i.e. a CPU machine
)


def _import_backend_quietly() -> None:
    """Import Keras (and with it TensorFlow) with its start-up chatter filtered out of stderr.

    Anything else printed during the import (a real error, a broken install) is passed through. What the import
    made (about 430,000 objects) lives to the end of the command, so it is moved out of the garbage collector's way:
    each full collection walked it (a two-epoch ``kres train`` spent 0.94 s in collections, 0.78 s of it in eight
    full ones, AMD EPYC Zen 3, December 2026). No collection first, as the test suite's conftest does: it would cost
    about what one full collection costs, and whatever garbage the import left in cycles is kept, a one-off.
    """
    if "keras" in sys.modules:
        return
    from keras_resnet import _compat
    from keras_resnet.terminal import stderr_without

    with stderr_without(_STARTUP_NOISE):
        try:
            _compat.import_keras()  # without the packages Keras imports for features kres does not use
        except (ImportError, ValueError) as err:
            raise _backend_error(err) from None
        _compat.cache_saving_skipsets()
        if importlib.util.find_spec("tensorflow") is not None:  # device discovery logs too
            importlib.import_module("tensorflow").config.list_physical_devices()
    gc.freeze()


def _backend_error(err: ImportError | ValueError):
    """The one line for ``import keras`` failing: a backend name it does not know (KERAS_BACKEND or keras.json), a
    backend package not installed, or an installed one that does not import (a broken TensorFlow)."""
    from keras_resnet.errors import KresError, first_line

    backend = os.environ.get("KERAS_BACKEND")
    config = os.path.join(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")), "keras.json")
    named = f"KERAS_BACKEND={backend}" if backend else f"the backend in {config}"
    if isinstance(err, ValueError) or (isinstance(err, ModuleNotFoundError) and err.name and "." not in err.name
                                       and importlib.util.find_spec(err.name) is None):
        return KresError(f"Keras cannot load {named} ({first_line(err)}): set KERAS_BACKEND to tensorflow, jax or "
                         "torch, one that is installed")
    return KresError(f"Keras's backend ({named}) fails to import: {first_line(err)}; repair or reinstall that "
                     "package, or set KERAS_BACKEND to another backend")


def _backend_after_parsing(command: click.Command) -> click.Command:
    """Make ``command`` (each command of a group) import the backend quietly when its callback starts.

    Click calls a callback only after every option has been parsed and its type checked, so help and
    option errors never wait for TensorFlow.
    """
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _backend_after_parsing(sub)
    elif command.callback is not None and not getattr(command.callback, "kres_imports_backend", False):
        callback = command.callback

        @functools.wraps(callback)
        def run(*args, **kwargs):
            _import_backend_quietly()
            try:
                return callback(*args, **kwargs)
            except BrokenPipeError as err:  # past click, whose own answer is exit status 1 with nothing said
                if _stdout_gone():
                    raise _ReaderGone from err
                raise  # stderr's reader (or another pipe): the command did not finish, and click says exit 1

        run.kres_imports_backend = True
        command.callback = run
    return command


INTERRUPTED = ("The files written so far are whole (kres writes each one whole or not at all); run the same command "
               "again to finish.")


# click 8.2+ raises it, a UsageError, for a group given no command; 8.1 printed the help and exited 0.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``docker stop``, ``kill``): the command ends as on Ctrl-C, through every ``finally``
    (temporaries removed, the run's lock given back) and with the same hint; it ended at once, with nothing said."""


class _Interrupts:
    """SIGTERM raises :class:`Terminated` in the main thread, as Ctrl-C raises KeyboardInterrupt, and neither is
    lost in a callback.

    A signal that lands while Python runs a weakref callback, a garbage-collector hook or a ``__del__`` (often, in
    TensorFlow and JAX) raises where Python can only print a traceback and drop it: the command ran on to the end,
    exit 0, and ignored every later SIGTERM. Such a signal is recorded, and a watcher thread sends it again until
    the main thread raises it where it is seen; one still unraised when the command ends makes its exit status.
    """

    def __init__(self) -> None:
        self.unwinding = False  # a Terminated is on its way up: a second SIGTERM must not cut the clean-up short
        self.dropped: int | None = None  # a signal Python dropped, not raised again yet
        self._stop = threading.Event()

    def on_sigterm(self, signum, frame) -> None:
        if not self.unwinding:
            self.unwinding, self.dropped = True, None
            raise Terminated

    def on_sigint(self, signum, frame) -> None:
        self.dropped = None
        raise KeyboardInterrupt

    def hook(self, previous_hook):
        def unraisable(info) -> None:
            if not isinstance(info.exc_value, KeyboardInterrupt):  # Terminated is one
                previous_hook(info)
            elif isinstance(info.exc_value, Terminated):
                self.unwinding, self.dropped = False, signal.SIGTERM
            else:
                self.dropped = signal.SIGINT
        return unraisable

    def watch(self, held: Callable[[], bool]) -> None:
        while not self._stop.wait(0.02):
            dropped = self.dropped
            if dropped is not None and not held():  # a hold has it: sent again, it was a second one, which stops
                os.kill(os.getpid(), dropped)  # at once

    def stop(self) -> None:
        self._stop.set()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[_Interrupts]:
    """Signals as :class:`_Interrupts` says, in the body (main thread only: the one Python runs signal handlers on)."""
    state = _Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, state.on_sigterm)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored (cmd &)
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, state.on_sigint)
    previous_hook, sys.unraisablehook = sys.unraisablehook, state.hook(sys.unraisablehook)
    from keras_resnet.fileio import interrupts_are_held  # here, not in the watcher: an import there came late

    watcher = threading.Thread(target=state.watch, args=(interrupts_are_held,), name="kres-signals", daemon=True)
    watcher.start()
    try:
        yield state
    finally:
        state.stop()
        watcher.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = previous_hook


class _ProgressMayGo:
    """stderr that drops what is written to it once its reader is gone (``kres export ... 2>&1 | head -2``): lost
    progress lines are no reason to stop the work, which ended part-way with exit status 0. The descriptor goes to
    /dev/null, for native writers to it as well."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _stderr_may_go() -> Iterator[None]:
    before = sys.stderr
    sys.stderr = _ProgressMayGo(before) if before is not None else None
    try:
        yield
    finally:
        sys.stderr = before


def main(argv: list[str] | None = None) -> int:
    """Run ``kres``; user errors print one ``Error:`` line and exit 2, never a traceback."""
    with _sigterm_as_interrupt() as interrupts, _stderr_may_go():
        try:
            code = _main(sys.argv[1:] if argv is None else argv)
            sys.stdout.flush()  # here, not at exit, where a closed pipe was exit status 1 with nothing said
        except BrokenPipeError:  # a flush of stdout, or stderr's reader gone while saying what went wrong
            return _reader_gone() if _stdout_gone() else 1
    if interrupts.dropped is not None:  # the command finished before the signal could be raised again
        return _interrupted(interrupts.dropped == signal.SIGTERM)
    return code


def _interrupted(terminated: bool, text: str = "") -> int:
    click.echo(f"{'Terminated' if terminated else 'Aborted'}. {text or INTERRUPTED}", err=True)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def _main(args: list[str]) -> int:
    try:
        code = cli.main(args=args, prog_name="kres", standalone_mode=False)
    except BaseException:
        from keras_resnet.terminal import end_live_line

        end_live_line()  # an error (or a traceback) had the progress bar's line
        return _ended(args)
    return code if isinstance(code, int) else 0  # a command's ctx.exit(N), which click catches and returns


def _ended(args: list[str]) -> int:
    """The exit status and one line for the exception being handled; an unknown error is raised again."""
    from keras_resnet.errors import KresError, damaged_records, onednn_kernel_missing, out_of_memory

    try:
        raise
    except click.exceptions.Exit as done:
        return done.exit_code
    except _ReaderGone:
        return _reader_gone()
    except click.exceptions.Abort as err:  # Ctrl-C: train says how to resume; the rest write whole files only
        return _interrupted(isinstance(err.__cause__ or err.__context__, Terminated), str(err))
    except _NO_ARGS_IS_HELP as err:  # `kres` or `kres bench` alone: the help, as --help prints it
        click.echo(err.ctx.get_help())
        return 0
    except click.UsageError as err:
        # an option missing its value comes without a context: the command is read off the arguments
        path = err.ctx.command_path if err.ctx else _command_of(args)[1]
        click.echo(f"Error: {_elsewhere(err, path) or err.format_message()} (see '{path} --help')", err=True)
        return 2
    except click.ClickException as err:
        click.echo(f"Error: {err.format_message()}", err=True)
        return err.exit_code
    except KresError as err:
        click.echo(f"Error: {_as_options(str(err))}", err=True)
        return 2
    except Exception as err:
        detail = out_of_memory(err)
        if detail is None:
            missing = onednn_kernel_missing(err) or damaged_records(err)
            if missing is None:
                raise
            click.echo(f"Error: {missing}", err=True)
            return 2
        options = _options_of(args)
        smaller = " or ".join(option for option in ("--batch-size", "--image-size") if option in options)
        fix = (f"run again with a smaller {smaller}" if smaller else
               "close what else uses the memory, or run it on a machine with more")
        if "--resume" in options:  # train: a run keeps its batch size, so a smaller one is a new run
            fix += " and a new --output"
        click.echo(f"Error: out of memory ({detail}): {fix}", err=True)
        return 2


# The library's messages name its keyword arguments (weights='imagenet', weights=PATH, variant='v1', depth=18); at the
# command line they are options.
# Only a word of its own: after a space or "(" and before a space, punctuation or the end (not --depth=50 after
# `--`, "----depth 50", nor a path such as runs/depth=50/best.keras, nor depth=18.5).
_KEYWORD_ARGUMENT = re.compile(r"(?<![^\s(])(?:(weights|variant)=(?:'([^']+)'|(PATH))|(depth)=(\d+)(?!\.?\d))"
                               r"(?![^\s,;:.)])")


def _as_options(message: str) -> str:
    return _KEYWORD_ARGUMENT.sub(lambda m: "--{} {}".format(*(g for g in m.groups() if g is not None)), message)


def _options_of(args: list[str]) -> set[str]:
    """The options of the command that ``args`` run (``bench throughput``: the sub-command's)."""
    command = _command_of(args)[0]
    return {opt for param in command.params for opt in param.opts} if command is not None else set()


def _elsewhere(err: click.UsageError, path: str) -> str | None:
    """For an option of other kres commands only, which commands take it: click guessed a near name of this
    command's (``kres evaluate --quantize``: "Did you mean '--batch-size'?"). A near spelling of one of this
    command's keeps click's guess (``kres bench tflite --depth``: "Did you mean '--depths'?")."""
    if not isinstance(err, click.NoSuchOption) or any(  # a near spelling of this command's: click's guess is right
            difflib.SequenceMatcher(None, err.option_name, near).ratio() >= 0.8 for near in err.possibilities or ()):
        return None
    owners = [name for name, command in _commands(cli)
              if any(err.option_name in (*param.opts, *param.secondary_opts) for param in command.params)]
    if not owners:
        return None
    listed = ", ".join(owners[:-1]) + " and " + owners[-1] if len(owners) > 1 else owners[0]
    return f"{path} has no option '{err.option_name}': it is an option of kres {listed}"


def _commands(group: click.Group, prefix: str = ""):
    """(name, command) of every command under ``group``, a sub-command as ``bench throughput``."""
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        elif command is not None:
            yield f"{prefix}{name}", command


def _command_of(args: list[str]) -> tuple[click.Command | None, str]:
    """The command that ``args`` run (None where they name none) and the path of the last one they name
    (``kres bench throughput``)."""
    command, names, path = cli, list(args), "kres"
    while isinstance(command, click.Group) and names:
        name = names.pop(0)
        command = command.get_command(None, name)
        path = f"{path} {name}" if command is not None else path
    return command, path


def entry_point() -> None:
    sys.exit(main())


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))  # Linux, BSD
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return False


class _ReaderGone(Exception):
    """stdout's reader closed the pipe while a command wrote to it."""


def _reader_gone() -> int:
    """``kres predict ... | head -1``: the reader of stdout has what it wanted and closed the pipe. Not an error;
    stdout goes to /dev/null so that Python's own flush at exit does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
