"""Every use of a private Keras or TensorFlow name, each saying which public gap it fills and the versions it was
checked on. tests/test_compat.py fails, naming the version, when one of them moves."""

from __future__ import annotations


def tensorflow_onednn_enabled() -> bool:
    """Whether the imported TensorFlow runs its oneDNN kernels. No public API reports it (tf.sysconfig describes
    the build, not the runtime switch). Checked on TensorFlow 2.21.0."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())
