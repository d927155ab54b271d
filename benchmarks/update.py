"""Keras's own optimizer update against kres's compiled one, in the training step: ``kres bench update``."""

import sys

from _entry import run_kres

if __name__ == "__main__":
    sys.exit(run_kres(["bench", "update", *sys.argv[1:]]))
