"""TFLite latency of float32/float16/dynamic/int8 models against keras.applications: ``kres bench tflite``."""

import sys

from _entry import run_kres

if __name__ == "__main__":
    sys.exit(run_kres(["bench", "tflite", *sys.argv[1:]]))
