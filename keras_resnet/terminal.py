"""What libraries print to the user's terminal.

TensorFlow's and LiteRT's C++ code writes some lines to file descriptor 2 whatever their log levels say (start-up
notes at import, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when an interpreter is made). Python's
``sys.stderr`` never sees them, so they are caught at the descriptor. Python libraries' own log lines (absl's,
which TFDS uses) are held back at their logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator

# Run in a process of its own: it passes on each line that the pattern (argv[1]) does not match, as it comes, and
# whatever is left once the pipe closes, even if the process that wrote it has crashed.
_FILTER = """
import re, sys
noise = re.compile(sys.argv[1])
for line in sys.stdin.buffer:
    if not noise.match(line.decode(errors="replace").rstrip("\\n")):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""
_LOCK = threading.Lock()  # file descriptor 2 is the whole process's: one catch at a time
_LIVE = {"open": False}  # a live line ("\r" and no newline yet, a progress bar's) is on the terminal


def is_live(stream) -> bool:
    """Whether ``stream`` is a terminal that redraws a line in place (``\r``, ESC[K): not a file, a pipe, or a
    terminal that says it is dumb (an editor's shell), which printed the escapes as they are."""
    return bool(getattr(stream, "isatty", None) and stream.isatty()) and os.environ.get("TERM") != "dumb"


def fit_line(line: str, stream) -> str:
    """``line`` cut to one row of ``stream``'s terminal: a longer live line wraps, and each redraw left its first
    row behind (eight stale rows an epoch at 80 columns)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no descriptor (io.UnsupportedOperation is an OSError)
        columns = shutil.get_terminal_size().columns  # $COLUMNS, else 80
    return line[:max(columns - 1, 20)]


def live_line(open_: bool) -> None:
    """Record whether a live line (drawn with ``\r``, no newline yet) is on standard error's terminal."""
    _LIVE["open"] = open_


def end_live_line(stream=None) -> None:
    """End a live line that is on the terminal (``stream``, standard error by default), so that what comes next (an
    error, a warning) has a line of its own: it was written after the bar, "... top5 0.9943Error: cannot write ..."."""
    if _LIVE["open"]:
        _LIVE["open"] = False
        stream = stream or sys.stderr
        with contextlib.suppress(Exception):  # no reader, a closed stream: nothing to end
            stream.write("\n")
            stream.flush()


@contextlib.contextmanager
def stderr_without(noise: re.Pattern) -> Iterator[None]:
    """Run the body with file descriptor 2 going through a filter process that drops the lines ``noise`` matches
    and passes every other line on at once: a real error, a broken install's message, or a native library's last
    words before a crash still reach the user. Where there is no descriptor 2, or no filter process can start,
    the body runs unfiltered."""
    with _LOCK:
        _flush_stderr()
        saved, sift = _start_filter(noise)
        if sift is None:
            yield
            return
        try:
            os.dup2(sift.stdin.fileno(), 2)
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            sift.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a process started in the body may still hold
                sift.wait(timeout=10)  # the pipe: the filter then goes on passing its lines on


@contextlib.contextmanager
def logger_quiet(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Run the body with the Python logger ``name`` passing on only records of ``level`` and above."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def _start_filter(noise: re.Pattern) -> tuple[int | None, subprocess.Popen | None]:
    """A copy of descriptor 2 and the filter process writing to it; (None, None) where either cannot be had."""
    try:
        saved = os.dup(2)
    except OSError:  # descriptor 2 is closed
        return None, None
    try:
        # In a session of its own: Ctrl-C at the terminal (or a signal to kres's process group) reaches kres, which
        # unwinds and closes the pipe, and not the filter, which printed a KeyboardInterrupt traceback and died.
        return saved, subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, noise.pattern],
                                       stdin=subprocess.PIPE, stdout=saved, close_fds=True, start_new_session=True)
    except OSError:
        os.close(saved)
        return None, None


def _flush_stderr() -> None:
    with contextlib.suppress(AttributeError, ValueError, OSError):  # None, or closed
        sys.stderr.flush()
