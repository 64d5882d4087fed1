"""Every module a notebook imports is declared: in the standard library, in pstn's core dependencies, or in the
`notebooks` extra that each chapter's first cell installs on Colab. A module that is only there because a runtime
happens to ship it fails this test, with the notebooks that import it."""
import ast
import json
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

NOTEBOOKS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if not any(s.startswith((".", "_")) for s in p.parts))


def top_level_imports(source: str) -> set[str]:
    "Top-level module names imported by one cell (IPython magics turned into Python first; relative imports skipped)."
    tree = ast.parse(TransformerManager().transform_cell(source))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0: out.add(node.module.split(".")[0])
    return out


def declared() -> dict[str, set[str]]:
    "Distribution names (canonical) of the core dependencies, the `notebooks` extra and the executors' extras."
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda reqs: {canonicalize_name(Requirement(r).name) for r in reqs}
    extras = project["optional-dependencies"]
    # the sweep executors' extras: imported by pstn.sweep only when their executor is chosen
    return {"core": names(project["dependencies"]) | {"pstn"},
            "notebooks": names(extras["notebooks"]),
            "executors": names(extras["ray"] + extras["slurm"])}


def undeclared(imports: dict[str, set[str]]) -> dict[str, list[str]]:
    "The imported modules (with their notebooks) that no declared distribution provides."
    allowed = set().union(*declared().values())
    providers = packages_distributions()
    bad = {}
    for module, where in imports.items():
        if module in sys.stdlib_module_names: continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])} or {canonicalize_name(module)}
        if not dists & allowed: bad[module] = sorted(where)
    return bad


def test_collector_sees_through_magics():
    src = '%pip install -q "x"\nimport os, numpy.linalg as la\nfrom scipy import stats\nfrom . import y\n!ls\n'
    assert top_level_imports(src) == {"os", "numpy", "scipy"}


def test_an_undeclared_import_is_caught():
    assert undeclared({"os": {"a"}, "numpy": {"a"}, "sklearn": {"b"}}) == {}      # stdlib, core, extra by import name
    assert undeclared({"docutils": {"c.ipynb"}}) == {"docutils": ["c.ipynb"]}        # installed here (book tool chain), not a notebook dependency


def test_every_notebook_import_is_declared():
    assert len(NOTEBOOKS) >= 20
    imports = {}
    for nb in NOTEBOOKS:
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                for m in top_level_imports("".join(cell["source"])):
                    imports.setdefault(m, set()).add(str(nb.relative_to(ROOT)))
    assert {"torch", "fastcore", "pstn"} <= set(imports)
    bad = undeclared(imports)
    assert not bad, ("imported by notebooks but declared neither in pyproject's dependencies nor in its "
                     f"`notebooks` extra: {bad}")
