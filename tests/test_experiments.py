"""Every experiment notebook in nbs/experiments runs end to end at its smoke profile (its parameters cell), through
the same runner as `pstn run`, and reports metrics. Also: every parameter line parses, and both profiles name
only real parameters."""
import ast
import json

import nbformat
import pytest

from conftest import ROOT
from pstn import runner

EXP_DIR = ROOT / "nbs" / "experiments"
EXPERIMENTS = sorted(runner.list_experiments(EXP_DIR))


def test_there_are_experiments():
    assert {"loss_landscape", "rotated_mnist", "fashion_placement", "failure_mode", "mnist_subsets", "ucr"} <= set(EXPERIMENTS), EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_parameters_parse_and_profiles_resolve(name):
    nb = nbformat.read(EXP_DIR / f"{name}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: expected exactly one parameters cell"
    assigned = [t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    # papermill silently drops lines it cannot parse (e.g. a comment containing '='); such a parameter could
    # not be set from a profile.
    assert sorted(runner.notebook_parameters(EXP_DIR / f"{name}.ipynb")) == sorted(assigned)
    for profile in ("cpu", "paper"):
        params, _ = runner.resolve_parameters(EXP_DIR / f"{name}.ipynb", profile)
        assert params["seed"] is not None


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_smoke_run(name, tmp_path):
    rec = runner.run_experiment(name, "smoke", results=tmp_path, exp_dir=EXP_DIR, progress=False)
    assert rec["status"] == "finished" and rec["profile"] == "smoke"
    assert rec["metrics"], f"{name} reported no metrics"
    saved = json.loads((tmp_path / name / rec["run_id"] / "record.json").read_text())
    assert saved["metrics"] == rec["metrics"] and saved["hardware"]["cpu_count"] >= 1
    # a second run of the same configuration reuses the run folder and its finished pieces
    rec2 = runner.run_experiment(name, "smoke", results=tmp_path, exp_dir=EXP_DIR, progress=False)
    assert rec2["run_id"] == rec["run_id"] and rec2["status"] == "finished"
