"""Lets a benchmark script run from a plain checkout (the GPU machine has no installed project)."""

import importlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_kres(args: list[str]) -> int:
    if importlib.util.find_spec("keras_resnet") is None:
        sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("kres") is None:
        # cli/ is installed under the name `kres`; from a checkout, import it under that name.
        spec = importlib.util.spec_from_file_location("kres", ROOT / "cli" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "cli")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["kres"] = module
        spec.loader.exec_module(module)
    return importlib.import_module("kres.main").main(args)
