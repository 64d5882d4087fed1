"""`pip install pstn` without a clone: a wheel built from this repository, installed (not editable) into a fresh
folder, used from an empty working directory. It must list the experiments, show their parameters and run one.

The wheel's dependencies (torch, papermill, ...) are taken from the project's environment: the wheel is installed
with `--no-deps --target` and put first on PYTHONPATH, so `import pstn` resolves to the installed copy, not to
the repository (checked)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    wheels, site, work = tmp / "dist", tmp / "site", tmp / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("pstn-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSTN_") or k == "PSTN_DATA"}
    env["PYTHONPATH"] = str(site)
    return site, work, env


def _run(installed, *args, timeout=600):
    site, work, env = installed
    return subprocess.run([sys.executable, "-c", "import sys; from pstn.cli import main; sys.exit(main())", *args],
                          cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_installed_copy_is_used(installed):
    site, work, env = installed
    res = subprocess.run([sys.executable, "-c", "import pstn, pstn.runner as r; print(pstn.__file__); "
                          "print(r.installed_experiments()); print(r.project_root())"],
                         cwd=work, env=env, capture_output=True, text=True, check=True)
    pkg, exps, root = res.stdout.split()
    assert Path(pkg).is_relative_to(site) and Path(exps) == site / "pstn" / "experiments" and root == "None"
    shipped = sorted(p.name for p in Path(exps).iterdir() if p.suffix in (".ipynb", ".yml"))
    in_repo = sorted(p.name for p in (ROOT / "nbs" / "experiments").iterdir() if p.suffix in (".ipynb", ".yml"))
    assert shipped == in_repo and len(shipped) >= 12


def test_list_and_params(installed):
    res = _run(installed, "list")
    assert res.returncode == 0, res.stderr
    names = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    expected = sorted(p.stem for p in (ROOT / "nbs" / "experiments").glob("*.ipynb"))
    assert sorted(names) == expected, res.stdout
    res = _run(installed, "params", "rotated_mnist")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines()[1:] if line.strip()}
    assert rows["train_size"][:2] == ["512", "60000"], res.stdout          # smoke default, cpu profile


def test_run_smoke(installed):
    site, work, env = installed
    res = _run(installed, "run", "rotated_mnist", "--profile", "smoke", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (rec_file,) = (work / "_results" / "rotated_mnist").glob("smoke-*/record.json")
    rec = json.loads(rec_file.read_text())
    assert rec["status"] == "finished" and Path(rec["notebook"]).is_relative_to(site)
    assert 0.0 <= rec["metrics"]["pstn_accuracy"] <= 1.0 and rec["git"] is None
