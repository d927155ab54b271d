"""What native libraries print to the user's terminal.

TensorFlow's and LiteRT's C++ code writes some lines to file descriptor 2 whatever their log levels say (start-up
notes at import, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when an interpreter is made). Python's
``sys.stderr`` never sees them, so they are caught at the descriptor.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def stderr_without(noise: re.Pattern) -> Iterator[None]:
    """Run the body with file descriptor 2 caught; afterwards print every caught line that ``noise`` does not
    match. A real error, or a broken install's message, still reaches the user (after the body, not during it)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines() if not noise.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)
