"""How the tests start ``kres`` in a child process: the command, and an environment on the CPU with TensorFlow's
C++ logs quiet and no cluster (``TF_CONFIG``) inherited from the shell."""

from __future__ import annotations

import os
import sys

KRES = [sys.executable, "-c", "from kres.main import entry_point; entry_point()"]


def kres_env(**extra: str) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env
