"""The README's commands are the ones that CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text):
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_command = next(b for b in _bash_blocks(readme) if "pytest" in b)
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] not in "#"]
    assert ci_lines[-1] == test_command


def test_readme_main_command_trains_on_builtin_data():
    main_command = _bash_blocks((ROOT / "README.md").read_text())[0]
    assert main_command.endswith("kres train --depth 18")
    assert "pip install -e ." in main_command


def test_layout_table_names_every_module_and_folder():
    """Every module of keras_resnet/ and every top-level folder is in the README's Layout table, and every path
    the table names exists."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = set()
    for row in rows:
        cell = row.split("|")[1]
        paths = re.findall(r"`([^`]+)`", cell)
        folder = paths[0].rpartition("/")[0] if "/" in paths[0].rstrip("/") else ""
        for path in paths:
            full = path if "/" in path or not folder else f"{folder}/{path}"
            assert (ROOT / full).exists(), f"the Layout table names {full}, which does not exist"
            named.add(full.rstrip("/"))
    modules = {f"keras_resnet/{p.name}" for p in (ROOT / "keras_resnet").glob("*.py") if p.name != "__init__.py"}
    folders = {"keras_resnet/bench", "cli", "deploy", "tests"}
    assert (modules | folders) - named == set()


def test_readme_says_evaluates_top5_is_top_k_for_fewer_classes():
    """The terminal prints top-k (k = min(5, classes)) and evaluation.json keeps it as "top5" beside "top_k"; the
    README said "top-5" alone."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert ("`evaluate` prints top-1, top-5 (top-k for a model of k < 5 classes: `evaluation.json` keeps it as "
            "`top5`, with its k in `top_k`), loss") in readme
