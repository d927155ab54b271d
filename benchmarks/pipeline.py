"""Input pipeline images/s per core against a naive decode, crop, resize pipeline: ``kres bench pipeline``."""

import sys

from _entry import run_kres

if __name__ == "__main__":
    sys.exit(run_kres(["bench", "pipeline", *sys.argv[1:]]))
