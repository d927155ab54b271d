"""Atomic artifact writes: a crash or a kill never leaves a half-written file under the final name; a file's SHA-256."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from keras_resnet import terminal
from keras_resnet.errors import KresError, first_five


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or fail with a one-line error that names it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=PROBE_PREFIX):
            pass
    except OSError as err:
        why = _why_not_writable(path, err)
        raise CannotWrite(f"cannot write to {path}: {why}; choose another output path") from None
    return path


def _why_not_writable(path: Path, err: OSError) -> str:
    """The reason a folder could not be created or written, as the OS error gives it, except where its words
    mislead: "No such file or directory" for a folder that exists (or under one) that takes no new files, as /proc
    and /sys do."""
    if err.errno == errno.EEXIST:
        return "a file or a broken link is in the way"
    if err.errno == errno.ENOENT:
        there = next((p for p in (path, *path.parents) if p.is_dir()), None)
        if there is not None and os.access(there, os.W_OK):
            which = "the folder" if there == path else str(there)
            return f"{which} takes no new files (a virtual file system, as /proc and /sys are)"
    return str(err.strerror or err)


class CannotWrite(KresError):
    """A folder cannot be created or written (permissions, a read-only device): the message names it."""


class OutOfSpace(KresError):
    """A write ran out of disk space (or quota): the message names the file and the space it needed."""


def is_out_of_space(err: BaseException) -> bool:
    """ENOSPC or EDQUOT, also where h5py or TensorFlow wrapped it in their own error with the errno in the text."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return any(sign in text for sign in ("No space left on device", "Disk quota exceeded", "errno = 28"))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _emptied(path: Path) -> int:
    """Truncate the partial file (or each file of the partial folder) at ``path`` that ran out of space; returns
    the bytes it held. At once, while the writer's objects are still alive: h5py, left with a file it could not
    flush, tried again when they were collected, printed tracebacks and crashed the interpreter at exit (a full
    disk in a checkpoint ended in exit 139). With the space back, that flush succeeds; and the free space the error
    names is then what the device has, not what the partial file left."""
    written = _size(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        with contextlib.suppress(OSError):
            os.truncate(file, 0)
    return written


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def out_of_space_error(final: Path, written: int, need: int | None) -> OutOfSpace:
    """The one line for a full disk: what was being written, how much it needed, how much is free."""
    free = free_bytes(final.parent) or 0
    if need:
        needed = f"about {_mb(max(need, written))}"
    else:
        needed = f"more than the {_mb(written)} written" if written else "more than is free"
    return OutOfSpace(f"no space left on the device of {final.parent} writing {final.name}: it needs {needed}, "
                      f"{_mb(free)} is free; free some space or choose another output path")


def free_bytes(directory: str | os.PathLike) -> int | None:
    """Free bytes on the device of ``directory`` (None where that cannot be read)."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def with_headers(array_bytes: int) -> int:
    """The bytes a file of arrays (a .weights.h5, a .keras zip, a SavedModel) takes for ``array_bytes`` of them:
    each format adds headers, about 1 KB an array in HDF5 (ResNet-18's checkpoint: 240 KB over 134 MB), which the
    check before writing missed, so a disk that fitted the arrays alone filled mid-write. 1% and 1 MiB more."""
    return array_bytes + array_bytes // 100 + 2**20


def _require_space(final: Path, need: int | None) -> None:
    """Fail before writing when the estimate alone does not fit: h5py, after a write fails for want of
    space, can crash the interpreter when it cleans up at exit, so it had better never start such a write."""
    if not need:
        return
    free = free_bytes(final.parent)
    if free is not None and free < need:
        raise out_of_space_error(final, 0, need)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None, need: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it is renamed onto ``final`` in one step.

    The temporary name keeps ``final``'s extension (or ``suffix``), since savers such as
    ``model.save`` insist on one. On error the temporary file is removed and ``final`` is untouched;
    running out of space is an :class:`OutOfSpace` error naming ``final`` and ``need`` (bytes, an estimate).
    """
    final = Path(final)
    ensure_writable_dir(final.parent)
    _require_space(final, need)
    ext = suffix if suffix is not None else "".join(final.suffixes)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.", suffix=f"{TEMP_MARK}{ext}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; the artifact gets the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except Exception as err:
        if is_out_of_space(err):
            raise out_of_space_error(final, _emptied(tmp_path), need) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, need: int | None = None) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory: build it under a temporary name, then swap it in."""
    final = Path(final)
    ensure_writable_dir(final.parent)
    _require_space(final, need)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=TEMP_MARK))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the final directory gets the usual mode
    try:
        yield tmp
        _swap_in(tmp, final)
    except Exception as err:
        if is_out_of_space(err):
            raise out_of_space_error(final, _emptied(tmp), need) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, final: Path) -> None:
    """Rename ``new`` onto ``final``; an earlier folder there is moved aside first (a kill between the two renames
    leaves it to :func:`remove_stale_temps`, which puts it back) and removed after."""
    if not (new.is_dir() and final.exists()):
        os.replace(new, final)
        return
    old = final.with_name(f".{final.name}{OLD_MARK}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


_STAGED_MARK = ".kres-staging"  # in a staging folder from its start: one made again by a later write lacks it


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, last: tuple[str, ...] = (), kept_on_error: tuple[str, ...] = (),
               own: tuple[str, ...] = ()) -> Iterator[Path]:
    """A hidden folder inside the folder ``final`` to write a set of artifacts into. When the body ends, each one is
    moved onto its name in ``final`` (an earlier file or folder of that name replaced), those named in ``last``
    last, and an earlier file named in ``own`` that the set lacks is removed (it was another set's). The moves are a
    rename or two each, with Ctrl-C held: a kill meanwhile leaves each artifact whole, old or new. A Ctrl-C that
    ends it has ``moved_in`` set: "all" (it waited for the moves), "some" (a second one cut them short) or None.

    A body that fails or is interrupted leaves ``final`` as it was, but for a file of ``kept_on_error`` that a
    :class:`KresError`'s line names (a log). A line that names the staging folder names ``final``."""
    final = Path(final)
    staging = Path(tempfile.mkdtemp(dir=final, prefix=".staged.", suffix=TEMP_MARK))
    (staging / _STAGED_MARK).touch()
    moved: list[str] = []
    whole = False
    try:
        yield staging
        if not (staging / _STAGED_MARK).exists():  # removed meanwhile (the folder with it), made again by later writes
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                final.rmdir()  # made again empty by them, too
            raise KresError(f"{final} was removed while the files were written into it, and the files written "
                            "before with it: run the command again")
        with interrupts_held("moving the files in before stopping (a second Ctrl-C stops at once, and leaves "
                             "some of them beside the earlier ones)"):
            names = sorted((path for path in staging.iterdir() if path.name != _STAGED_MARK),
                           key=lambda path: (path.name in last, path.name))
            for entry in names:
                try:
                    _swap_in(entry, final / entry.name)
                except OSError as err:  # made read-only meanwhile: a traceback, and the staging folder left
                    kept = f"moved in before it, beside the earlier files: {first_five(moved)}; " if moved else ""
                    raise CannotWrite(f"cannot move {entry.name} into {final}: {err.strerror or err}; {kept}make "
                                      "the folder writable and run the command again") from None
                moved.append(entry.name)
            for name in set(own) - set(moved):
                (final / name).unlink(missing_ok=True)
            whole = True
    except KeyboardInterrupt as stop:
        stop.moved_in = "all" if whole else "some" if moved else None  # held until they were in: the set is whole
        raise
    except KresError as err:
        for name in kept_on_error:
            kept = staging / name
            if str(kept) in str(err) and kept.is_file() and kept.stat().st_size:
                os.replace(kept, final / name)
        if str(staging) not in str(err):
            raise
        raise type(err)(str(err).replace(str(staging), str(final))) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Holding:
    """The state of :func:`interrupts_held`: whether a hold is on, the handlers it replaced, and the signal (with its
    frame) that came meanwhile."""

    def __init__(self) -> None:
        self.on = False
        self.previous: dict = {}
        self.held: tuple | None = None
        self.late: tuple | None = None  # one that came while the handlers were being put back
        self.note: str | None = None


_holding = _Holding()


def interrupts_are_held() -> bool:
    """Whether a hold is on (kres's signal watcher does not send a dropped signal again meanwhile: the hold has it)."""
    return _holding.on


@contextlib.contextmanager
def interrupts_held(note: str | None = None) -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the body has ended, then are raised as they would have been: a checkpoint or
    an epoch's saves that were under way are finished rather than lost. ``note`` is printed on stderr when one
    comes (the wait can be seconds). A second one while held is raised at once (a write that hangs can still be
    stopped). A hold inside a hold is the outer one; an ignored signal stays ignored; main thread only (the one
    Python runs handlers on)."""
    if _holding.on or threading.current_thread() is not threading.main_thread():
        yield
        return
    _holding.held, _holding.note = None, note
    _holding.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _holding.on = True
    try:
        for sig, handler in _holding.previous.items():
            if handler not in (signal.SIG_IGN, None):  # None: set outside Python, left as it is
                signal.signal(sig, _hold)
        yield
    finally:
        held = _release()
    if held is not None:
        _raise_as_before(*held)


def _hold(signum, frame) -> None:
    if not _holding.on:  # came while the handlers were being put back: raised once they all are
        _holding.late = _holding.late or (signum, frame)
    elif _holding.held is None:
        _holding.held = (signum, frame)
        _say_held(_holding.note)
    else:  # a second one: at once
        _release()
        _raise_as_before(signum, frame)


def _say_held(note: str | None) -> None:
    """``note`` on stderr, from the signal handler: written to the descriptor (a write into Python's stream buffer,
    which the code it interrupted may be in, can fail), on a line of its own after a terminal's live line."""
    if not note:
        return
    with contextlib.suppress(Exception):  # no reader, a closed stream: the hold goes on without it
        live = terminal.is_live(sys.stderr)  # (where a live bar may be drawn: not in a dumb terminal)
        os.write(2, f"{chr(10) if live else ''}kres: {note}\n".encode())


def _release() -> tuple | None:
    """The handlers back; returns the signal held meanwhile, if any. ``on`` goes first: a signal that comes while
    the handlers are put back is returned too (``late``), once every handler is back, not held for nobody."""
    if not _holding.on:
        return None
    _holding.on = False
    for sig, handler in _holding.previous.items():
        if handler not in (signal.SIG_IGN, None):
            signal.signal(sig, handler)
    held = _holding.held or _holding.late
    _holding.held = _holding.late = None
    return held


def _raise_as_before(signum, frame) -> None:
    """What the handler the hold replaced would have done: Python's (KeyboardInterrupt), kres's (SIGTERM as an
    interrupt), or the default action (the process ends), taken now."""
    handler = _holding.previous.get(signum, signal.SIG_DFL)
    if callable(handler):
        handler(signum, frame)
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


# The names kres gives its temporaries: atomic_path's and atomic_dir's (tempfile adds 8 characters), the folder
# atomic_dir moves an old version to, ensure_writable_dir's probe, QAT's work folder (``QAT_TEMP_PREFIX``) and the
# TFLite converter's (``CONVERT_TEMP_PREFIX``: a SavedModel as large as the model's weights).
# Each carries "kres", so that a folder's own hidden files (".notes.draft001.tmp", ".proj.old") are never taken
# for one: the output folder may be any folder of the user's.
TEMP_MARK = ".kres-tmp"
OLD_MARK = ".kres-old"
PROBE_PREFIX = ".kres-probe-"
QAT_TEMP_PREFIX = ".kres-qat-"
CONVERT_TEMP_PREFIX = ".kres-convert-"
_RANDOM = "[a-z0-9_]{8}"
_TEMP_NAME = re.compile("|".join(f"^{pattern}$" for pattern in (
    rf"\..+\.{_RANDOM}{re.escape(TEMP_MARK)}.*", re.escape(PROBE_PREFIX) + _RANDOM,
    re.escape(QAT_TEMP_PREFIX) + _RANDOM, re.escape(CONVERT_TEMP_PREFIX) + _RANDOM,
    # Before the names carried "kres": only those of kres's own artifacts (a checkpoint's weights are ~45-100 MB,
    # an export's .keras and SavedModel as much).
    rf"\.(ckpt-\d+\.weights|best|last|saved_model|model|model_[a-z0-9_]+)\.{_RANDOM}\.tmp.*", rf"\.qat-{_RANDOM}")))
_OLD_NAME = re.compile(rf"^\.(.+){re.escape(OLD_MARK)}$|^\.(saved_model)\.old$")  # the second: before "kres"
LOCK_NAME = ".lock"  # keras_resnet.runlock's file in a folder it holds


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed writes left in ``directory`` and its sub-folders (one level down); an old
    version that atomic_dir had moved aside goes back where no new one took its place (a kill between its renames).

    Only for a directory this process has locked (keras_resnet.runlock): nobody else can be writing there. A
    sub-folder with a lock file of its own (an export into RUN/export) is left to whoever locks it.
    """
    directory = Path(directory)
    removed = []
    subfolders = [p for p in directory.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                  and not (p / LOCK_NAME).exists()]
    for folder in [directory, *subfolders]:
        for path in folder.iterdir():
            old = _OLD_NAME.match(path.name)
            if old and path.is_dir() and not (final := folder / (old[1] or old[2])).exists():
                os.replace(path, final)
                continue
            if not (old or _TEMP_NAME.match(path.name)):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _umask() -> int:
    """The process's umask, read without setting it where Linux shows it: os.umask can only read it by setting
    it, and tf.data's, h5py's and TensorBoard's threads may create files meanwhile."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # elsewhere, for an instant, the strictest usual mask rather than none
    os.umask(umask)
    return umask


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read a MiB at a time (a float32 ResNet-152 .tflite is 230 MB, on a device): a model
    card's, a converter.log's and a checkpoint's (its state.json records it) digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(final: str | os.PathLike, content: bytes) -> Path:
    with atomic_path(final, need=len(content)) as tmp:
        tmp.write_bytes(content)
    return Path(final)


def write_text(final: str | os.PathLike, text: str) -> None:
    with atomic_path(final, need=len(text.encode())) as tmp:
        tmp.write_text(text, encoding="utf-8")  # (not the locale's: labels.txt is read as UTF-8 on the device)


def write_json(final: str | os.PathLike, data) -> None:
    write_text(final, json_text(final, data))


def json_text(final: str | os.PathLike, data) -> str:
    """What :func:`write_json` writes to ``final``. Strict JSON: NaN and infinity are not JSON, and other readers
    reject a file that holds them."""
    try:
        return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as err:
        raise KresError(f"cannot write {final}: a value is not a finite number ({err}); nothing was written") from None


def absolute(path: str | None) -> str | None:
    """A path as the user typed it, made absolute (``~`` expanded), to be read from any folder later; a URL
    (``gs://``, ``s3://``) as typed."""
    if path is None or "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))
