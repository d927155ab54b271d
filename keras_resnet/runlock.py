"""One process per run directory: ``RUN/.lock``, held with ``flock`` for the life of train, export or QAT.

The kernel drops an ``flock`` when its holder dies, however it dies, so a lock is never stuck. The file
also names the holder (PID and host) so a second process can say who holds it; a clean exit removes it (an
exported folder keeps only the artifacts), so a name found in a lock that nobody holds is a killed holder's,
and taking it over is said.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from keras_resnet import fileio
from keras_resnet.errors import KresError

LOCK_FILE = ".lock"

_held: dict[Path, tuple[int, bool]] = {}  # resolved run dir -> (fd, whether acquire created the directory)


def acquire(run_dir: str | os.PathLike, stream=None) -> None:
    """Lock ``run_dir`` (created if missing) for this process, or raise a one-line KresError naming the holder.

    Re-entrant within one process; :func:`release` (or :func:`releasing` around a function) gives it back.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _held:
        return
    created = not run_dir.exists()
    fd = _locked(run_dir)
    stale = _read(fd)
    me = f"PID {os.getpid()} on {socket.gethostname()}"
    if stale and stale != me:
        stream = stream or sys.stderr
        stream.write(f"{run_dir} was locked by {stale}, which is no longer running: taking it over\n")
        stream.flush()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
    except OSError:  # a full disk must not stop the lock itself: flock needs no bytes
        pass
    _held[key] = (fd, created)
    fileio.remove_stale_temps(run_dir)  # left by a killed writer: with the lock held, nobody else writes here


def release(run_dir: str | os.PathLike) -> None:
    """Give back this process's lock on ``run_dir``; a directory that acquire created and nothing else
    filled is removed, so a run that failed on a user error leaves nothing behind."""
    run_dir = Path(run_dir)
    entry = _held.pop(run_dir.resolve(), None)
    if entry is None:
        return
    fd, created = entry
    try:
        (run_dir / LOCK_FILE).unlink()  # before the flock goes: the next holder finds no name, or its own file
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # emptied, which says the same
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when empty
    os.close(fd)


def releasing(fn: Callable) -> Callable:
    """Decorator: every lock taken while ``fn`` runs is given back when it returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = set(_held)
        try:
            return fn(*args, **kwargs)
        finally:
            for key in set(_held) - before:
                release(key)

    return wrapper


def _locked(run_dir: Path) -> int:
    """``run_dir`` (created if missing) with ``RUN/.lock`` open and flocked by this process.

    A holder that releases removes the file while it still holds the flock, so one opened just before then is
    a file nobody else will look at: its flock is worthless, and the path is opened again.
    """
    path = run_dir / LOCK_FILE
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise KresError(f"cannot write to {run_dir}: {err.strerror or err}; choose another output path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(fd) or "another process"
            os.close(fd)
            raise KresError(f"{run_dir} is in use by {holder}: wait for it to finish, or choose another "
                            "output directory") from None
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        os.close(fd)


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    return ""
