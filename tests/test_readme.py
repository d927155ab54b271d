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


def _param_counts(depth: int, variant: str = "v1.5", num_classes: int = 1000) -> tuple[int, int]:
    """(trainable, total) weights of ``resnet(depth, variant=variant)``, counted from the depth table without
    building it: BN's moving mean and variance are Keras's non-trainable weights (torchvision's buffers)."""
    from keras_resnet.specs import DEPTHS, STAGE_WIDTHS, VARIANTS

    spec, bias = DEPTHS[depth], VARIANTS[variant].conv_bias
    counts = [0, 0]  # trainable, BN statistics

    def conv_bn(kernel, inputs, outputs):
        counts[0] += kernel * kernel * inputs * outputs + (outputs if bias else 0) + 2 * outputs
        counts[1] += 2 * outputs

    conv_bn(7, 3, 64)
    channels = 64
    for stage, (width, repeats) in enumerate(zip(STAGE_WIDTHS, spec.repeats)):
        out = width * spec.expansion
        for index in range(repeats):
            kernels = [(1, channels, width), (3, width, width), (1, width, out)] if spec.block == "bottleneck" else [
                (3, channels, width), (3, width, width)]
            for kernel, inputs, outputs in kernels:
                conv_bn(kernel, inputs, outputs)
            if index == 0 and (stage > 0 or channels != out):
                conv_bn(1, channels, out)  # the projection shortcut
            channels = out
    counts[0] += channels * num_classes + num_classes
    return counts[0], counts[0] + counts[1]


def test_model_table_counts_every_depths_parameters_exactly():
    """Its one "params" column held torchvision's (trainable) counts, 11,689,512 for ResNet-18 where count_params()
    says 11,699,112, and the v1 figures below it were count_params() totals: each column is now one thing."""
    import keras_resnet

    readme = (ROOT / "README.md").read_text()
    header, _, *rows = readme.split("\n| depth |", 1)[1].split("\n\n", 1)[0].splitlines()
    assert header.split("|")[2:4] == [" trainable params (v1.5, 1000 classes) ", " all params (`count_params()`) "]
    table = {int(cells[1]): (int(cells[4].replace(",", "")), int(cells[5].replace(",", "")))
             for cells in (row.split("|") for row in rows)}
    assert table == {depth: _param_counts(depth) for depth in keras_resnet.DEPTHS}
    v1 = re.search(r"`count_params\(\)` equals keras\.applications' \(([\d,]+) / ([\d,]+) / ([\d,]+) for 50/101/152\)",
                   " ".join(readme.split()))
    assert [int(n.replace(",", "")) for n in v1.groups()] == [_param_counts(d, "v1")[1] for d in (50, 101, 152)]
    model = keras_resnet.resnet(18, input_shape=(32, 32, 3))  # the count above is the builder's (at any size)
    assert _param_counts(18) == (sum(int(w.numpy().size) for w in model.trainable_weights), model.count_params())
