"""How the tests start ``kres`` in a child process: the command, and an environment on the CPU with TensorFlow's
C++ logs quiet and no cluster (``TF_CONFIG``) inherited from the shell."""

from __future__ import annotations

import os
import signal
import sys

KRES = [sys.executable, "-c", "from kres.main import entry_point; entry_point()"]


def kres_env(**extra: str) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def ctrl_c_as_at_a_terminal() -> None:
    """``preexec_fn`` for a child that is sent Ctrl-C: SIGINT back to its default. A shell starts a background job
    (``pytest &``, some CI runners) with SIGINT ignored, every child inherits that, and kres rightly leaves an
    ignored Ctrl-C ignored; the tests that send one would then fail for the way the suite was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
