"""The Sphinx extension that maps nbdev directives to myst-nb tags (_ext/nbdev_directives.py)."""
import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "_ext"))
from nbdev_directives import convert_notebook  # noqa: E402


def convert(*sources, gpu=False):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": s} for s in sources], "metadata": {},
          "nbformat": 4, "nbformat_minor": 5}
    return [(c["source"], c["metadata"].get("tags", [])) for c in json.loads(convert_notebook(json.dumps(nb), gpu=gpu))["cells"]]


def test_mapping():
    cells = convert("#| hide\nimport os", "#| export\ndef f(): pass", "#| default_exp affine",
                    "#|echo: false\nx = 1", "#| output: false\nprint(1)", "#| eval: false\n1/0",
                    "#| gpu\ntorch.cuda", "x = 2  # a comment, #| not a directive here", ["#| export\n", "y = 3\n"])
    assert cells[0] == ("import os", ["remove-cell"])
    assert cells[1] == ("def f(): pass", [])
    assert cells[2][1] == ["remove-cell"]
    assert cells[3] == ("x = 1", ["remove-input"])
    assert cells[4] == ("print(1)", ["remove-output"])
    assert cells[5] == ("1/0", ["skip-execution"])
    assert cells[6] == ("torch.cuda", ["skip-execution"])
    assert cells[7] == ("x = 2  # a comment, #| not a directive here", [])   # only leading lines are directives
    assert cells[8] == ("y = 3", [])


def test_code_fold_collapses_the_input():
    assert convert("#| export\n#| code-fold: true\ndef f(): pass")[0] == ("def f(): pass", ["hide-input"])


def test_gpu_cells_run_when_a_gpu_is_there():
    assert convert("#| gpu\ntorch.cuda", gpu=True)[0] == ("torch.cuda", [])


def test_existing_tags_are_kept():
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "#| hide\nn = 1"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    cell = json.loads(convert_notebook(json.dumps(nb)))["cells"][0]
    assert cell["metadata"]["tags"] == ["parameters", "remove-cell"]
