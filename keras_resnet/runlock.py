"""One process per run directory: ``RUN/.lock``, held with ``flock`` for the life of train, export or QAT.

The kernel drops an ``flock`` when its holder dies, however it dies, so a lock is never stuck. The file
also names the holder (PID and host) so a second process can say who holds it; a clean exit removes it (an
exported folder keeps only the artifacts), so a name found in a lock that nobody holds is a killed holder's,
and taking it over is said.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from keras_resnet import fileio
from keras_resnet.errors import KresError

LOCK_FILE = fileio.LOCK_NAME

_held: dict[Path, tuple[int, bool]] = {}  # resolved run dir -> (fd, whether acquire created the directory)


def acquire(run_dir: str | os.PathLike, stream=None) -> None:
    """Lock ``run_dir`` (created if missing) for this process, or raise a one-line KresError naming the holder.

    Re-entrant within one process; :func:`release` (or :func:`releasing` around a function) gives it back.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _held:
        return
    fd, created = _locked(run_dir)
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


def holder(run_dir: str | os.PathLike, elsewhere: bool = False) -> str | None:
    """"PID N on HOST" of a live process of this host that holds ``run_dir``, from the name in its lock file (no
    flock is taken: a probe could make a starting holder fail); None where nobody here holds it. ``elsewhere``:
    also the name of a process of another host (a shared folder), whose life cannot be checked from here."""
    try:
        name = (Path(run_dir) / LOCK_FILE).read_text(errors="replace").strip()
        pid, host = name.removeprefix("PID ").split(" on ", 1)
        if host != socket.gethostname():
            return name if elsewhere else None
        if int(pid) == os.getpid():
            return None
        os.kill(int(pid), 0)
    except PermissionError:  # another user's process: alive
        return name
    except (OSError, ValueError):  # no lock file, not a name, or its process is gone
        return None
    return name


def release(run_dir: str | os.PathLike) -> None:
    """Give back this process's lock on ``run_dir``; a directory that acquire created and nothing else
    filled is removed, so a run that failed on a user error leaves nothing behind."""
    run_dir = Path(run_dir)
    entry = _held.pop(run_dir.resolve(), None)
    if entry is None:
        return
    fd, created = entry
    lock = run_dir / LOCK_FILE
    if _is_at(fd, lock):  # else removed by hand meanwhile: the file there, if any, is not this one's
        try:
            lock.unlink()  # before the flock goes: the next holder finds no name, or its own file
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


def _locked(run_dir: Path, tries: int = 100) -> tuple[int, bool]:
    """``RUN/.lock`` open and flocked by this process, and whether this call created ``run_dir``.

    A holder that releases removes the file while it still holds the flock (and its folder, when it created
    it and nothing else is there), so a file or folder found just before then is gone a moment later: the
    flock won on such a file is worthless, and the path is tried again.
    """
    path = run_dir / LOCK_FILE
    for _ in range(tries):
        try:
            created = _made_dir(run_dir)
            fd = _open(path)
        except _Gone:
            continue
        except OSError as err:
            raise KresError(f"cannot write to {run_dir}: {err.strerror or err}; choose another output path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(fd) or "another process"
            os.close(fd)
            raise KresError(f"{run_dir} is in use by {holder}: wait for it to finish, or choose another "
                            "output directory") from None
        if _is_at(fd, path):
            return fd, created
        os.close(fd)
    raise KresError(f"cannot lock {run_dir}: its lock file kept disappearing; choose another output directory")


class _Gone(Exception):
    """The folder was removed between two calls of ``_locked``."""


def _made_dir(run_dir: Path) -> bool:
    """Create ``run_dir`` with its parents; False when it was there already."""
    try:
        run_dir.mkdir(parents=True)
        return True
    except FileExistsError:
        if run_dir.is_dir():
            return False
        if run_dir.exists() or run_dir.is_symlink():
            raise FileExistsError(errno.EEXIST, "a file or a broken link is in the way", str(run_dir)) from None
        raise _Gone from None


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        if path.parent.is_dir():
            raise
        raise _Gone from None  # its folder went after _made_dir


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one ``path`` names now."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    return ""
