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
