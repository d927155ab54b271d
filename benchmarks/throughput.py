"""Training throughput against keras.applications and torchvision: ``kres bench throughput``."""

import sys

from _entry import run_kres

if __name__ == "__main__":
    sys.exit(run_kres(["bench", "throughput", *sys.argv[1:]]))
