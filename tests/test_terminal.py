"""keras_resnet.terminal: native libraries' chatter caught at file descriptor 2, everything else passed on."""

import os
import subprocess
import sys
import threading
import time

import pytest
from processes import ctrl_c_as_at_a_terminal

from keras_resnet.terminal import stderr_without
from kres.main import _STARTUP_NOISE

# Lines TensorFlow 2.21 printed at import on a CPU machine with TF_CPP_MIN_LOG_LEVEL=2 (December 2026).
TF_STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796422489.775584     750 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796422489.775957     750 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
    "E0000 00:00:1796421139.115914   26746 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
]
REAL = "E0000 00:00:1796421139.2   26746 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error (999)"


def _write_fd2(lines):
    os.write(2, "".join(f"{line}\n" for line in lines).encode())


def test_startup_chatter_is_dropped_and_a_real_error_is_passed_on(capfd):
    with stderr_without(_STARTUP_NOISE):
        _write_fd2([*TF_STARTUP[:2], REAL, *TF_STARTUP[2:]])
    assert capfd.readouterr().err == f"{REAL}\n"


def test_what_was_kept_is_passed_on_when_the_body_raises(capfd):
    with pytest.raises(RuntimeError, match="broken"), stderr_without(_STARTUP_NOISE):
        _write_fd2([TF_STARTUP[0], "ImportError: libfoo.so: cannot open shared object file"])
        raise RuntimeError("broken")
    assert capfd.readouterr().err == "ImportError: libfoo.so: cannot open shared object file\n"


def test_a_crash_in_the_body_still_shows_what_was_written_before_it():
    crash = ("import os, re, signal; from keras_resnet.terminal import stderr_without\n"
             "with stderr_without(re.compile('^I0000 ')):\n"
             "    os.write(2, b'I0000 chatter\\nF0000 check failed: the model is broken\\n')\n"
             "    os.kill(os.getpid(), signal.SIGSEGV)\n")
    result = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=60)
    assert result.returncode == -11
    assert result.stderr == "F0000 check failed: the model is broken\n"


def test_two_threads_at_once_leave_descriptor_2_as_it_was(capfd):
    before, inside = os.fstat(2), threading.Event()

    def write(name, wait, hold):
        if wait:
            inside.wait()
        with stderr_without(_STARTUP_NOISE):
            inside.set()
            _write_fd2([TF_STARTUP[0], f"kept {name}"])
            time.sleep(hold)

    # b starts while a is inside and leaves after it: unlocked, b would put back a's catch as descriptor 2
    threads = [threading.Thread(target=write, args=("a", False, 0.1)),
               threading.Thread(target=write, args=("b", True, 0.3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert sorted(capfd.readouterr().err.splitlines()) == ["kept a", "kept b"]


_CTRL_C = """
import os, re, signal, sys, time
from keras_resnet.terminal import stderr_without

try:
    with stderr_without(re.compile("noise")):
        os.write(2, b"before\\n")
        os.killpg(os.getpgid(0), signal.SIGINT)  # Ctrl-C at a terminal: to the whole foreground process group
        time.sleep(5)
except KeyboardInterrupt:
    os.write(2, b"Aborted.\\n")
"""


def test_ctrl_c_reaches_kres_and_not_its_stderr_filter():
    """The filter process got Ctrl-C too: it printed a KeyboardInterrupt traceback above kres's 'Aborted.' line,
    and whatever kres wrote to stderr while it was dead was lost."""
    result = subprocess.run([sys.executable, "-c", _CTRL_C], capture_output=True, text=True, timeout=60,
                            start_new_session=True,  # its own process group, which it then interrupts
                            preexec_fn=ctrl_c_as_at_a_terminal)
    assert result.stderr == "before\nAborted.\n"
