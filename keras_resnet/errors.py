"""The one exception type for mistakes a user can fix, and the one reading of each library error a user can fix:
memory that ran out, and a oneDNN kernel this CPU (or a cap on it) lacks."""

import contextlib
import os
import re


class KresError(ValueError):
    """A user-facing error: its message is one line that names the problem and the fix.

    The CLI prints it as ``Error: <message>`` and exits with status 2, never with a traceback. A ValueError, as
    Keras's and NumPy's errors for a wrong argument are, so ``except ValueError`` around a call catches it too; an
    ``except ValueError`` in kres around code that raises one lets it through unchanged (``except KresError: raise``).
    """


class TrainsFix(KresError):
    """A fact about an image folder, said with ``kres train``'s fix; a command whose options differ gives its own
    (:func:`split_fix`: evaluate for both kinds, export for a split)."""

    def __init__(self, fact: str, fix: str, sep: str = ": "):
        super().__init__(f"{fact}{sep}{fix}")
        self.fact = fact


class TooFewToSplit(TrainsFix):
    """Too few images for the folder's validation split: train's fix is its --val-split, an option evaluate and
    export do not have."""


class OneClassOnly(TrainsFix):
    """Images of one class only: train's fix is a second class folder; evaluate can score every image of it."""


@contextlib.contextmanager
def split_fix(fix: str, kind: type[TrainsFix] = TooFewToSplit):
    """A :class:`TooFewToSplit` (or another ``kind`` of :class:`TrainsFix`) raised inside, said with ``fix``:
    evaluate's and export's told users to change --val-split, an option they do not have, and evaluate's that a
    classifier needs two classes where --all-images scores a folder of one."""
    try:
        yield
    except kind as err:
        raise KresError(f"{err.fact}: {fix}") from None


def counted(count: float, noun: str, plural: str | None = None) -> str:
    """'1 image', '2 images', '0.5 epochs': a count and its noun, as every line kres prints says them; ``plural``
    where it is not the noun and an s ('batch', 'batches')."""
    return f"{count:g} {noun if count == 1 else plural or noun + 's'}"


def first_five(names) -> str:
    """'a, b, c, d, e ...': the first five of ``names``, and "..." where there are more, as a one-line error or
    note lists classes and files."""
    names = [str(name) for name in names]
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``err``'s message (at most ``limit`` characters), or its type name when the
    message is empty: library errors often carry pages of text, and a KresError must stay one line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:limit]


def out_of_memory(err: BaseException) -> str | None:
    """What ran out, in one line, when ``err`` is an allocation failure (TensorFlow's ``ResourceExhaustedError``,
    XLA's ``RESOURCE_EXHAUSTED`` under JAX, Python's ``MemoryError``); None for any other error.

    TensorFlow raises the same error type for a full disk, too many open files or a quota, so the message must
    also say it is memory; and it puts its "OOM when allocating tensor ..." line below a "Graph execution error:"
    header and the node's trace, so that line is looked for rather than the first."""
    if isinstance(err, MemoryError):
        return f"host memory{': ' + first_line(err) if str(err).strip() else ''}"
    text = str(err)
    if type(err).__name__ != "ResourceExhaustedError" and "RESOURCE_EXHAUSTED" not in text:
        return None
    said = next((line.strip() for line in text.splitlines() if _MEMORY.search(line)), None)
    if said is None:
        return None
    return re.sub(r"\{\{[^}]*\}\}\s*|\s*name:\s*$", "", said)[:200]  # TensorFlow's node tags, its empty op name


_MEMORY = re.compile(r"\bOOM\b|out of memory|allocat", re.IGNORECASE)


def damaged_records(err: BaseException) -> str | None:
    """One line with the fix where a TFDS record file is missing or cut short (TensorFlow's NotFoundError or
    DataLossError as the data is read: a 67-line traceback), else None."""
    name, text = type(err).__name__, str(err)
    first = text.strip().splitlines()[0] if text.strip() else ""
    detail = re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$", "", first)
    if name == "DataLossError" and ("truncated record" in text or "corrupted record" in text):
        what = "cut short"
    elif name == "NotFoundError" and ".tfrecord" in text:
        what = "missing"
    else:
        return None
    return (f"the TFDS data is damaged: a record file is {what} ({detail}): prepare the dataset again (tfds build) "
            "and pass its --tfds-dir")


def onednn_kernel_missing(err: BaseException, environ=os.environ) -> str | None:
    """One line with the fix where TensorFlow's oneDNN has no kernel for an op ("could not create a primitive
    descriptor"), else None. Seen with ``ONEDNN_MAX_CPU_ISA`` capping oneDNN below the CPU's own bfloat16/float16
    support, which TensorFlow reads from the CPU itself and so still hands such ops to oneDNN (TF 2.21)."""
    text = str(err)
    if "could not create a primitive descriptor" not in text:
        return None
    found = re.search(r"primitive descriptor for the (.+?) primitive", text)
    what = found.group(1) if found else "operation"
    cap = environ.get("ONEDNN_MAX_CPU_ISA")
    if cap:
        return (f"oneDNN has no {what} kernel for this data type with ONEDNN_MAX_CPU_ISA={cap}: unset "
                "ONEDNN_MAX_CPU_ISA, or leave --precision out to run in float32")
    return (f"oneDNN has no {what} kernel for this data type on this CPU: leave --precision out to run in float32, "
            "or set TF_ENABLE_ONEDNN_OPTS=0 for TensorFlow's own kernels")
