"""Seconds for ``kres train`` on the built-in digits to reach 97% validation top-1: ``kres bench time-to-accuracy``."""

import sys

from _entry import run_kres

if __name__ == "__main__":
    sys.exit(run_kres(["bench", "time-to-accuracy", *sys.argv[1:]]))
