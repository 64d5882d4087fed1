"""Where the runner looks for experiments and writes runs ($PSTN_EXPERIMENTS, $PSTN_RESULTS and their defaults), and
what `publish` copies (figures and pieces up to `max_kb`)."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import ROOT
from pstn import runner

PSTN = str(Path(sys.executable).parent / "pstn")
TINY = ROOT / "tests" / "experiments"


@pytest.fixture
def clean_env(monkeypatch):
    "No $PSTN_EXPERIMENTS / $PSTN_RESULTS from the caller's shell."
    monkeypatch.delenv("PSTN_EXPERIMENTS", raising=False)
    monkeypatch.delenv("PSTN_RESULTS", raising=False)
    return monkeypatch


def test_experiments_dir_order(clean_env, tmp_path):
    "argument > $PSTN_EXPERIMENTS > the clone's nbs/experiments > the copies installed with the package."
    mp = clean_env
    mp.chdir(ROOT / "tests")                                          # inside the clone, below its root
    assert runner.experiments_dir() == ROOT / "nbs" / "experiments"
    mp.setenv("PSTN_EXPERIMENTS", str(TINY))
    assert runner.experiments_dir() == TINY
    assert list(runner.list_experiments()) == ["tiny"]               # and everything built on it follows
    assert runner.experiments_dir(ROOT / "nbs" / "experiments") == ROOT / "nbs" / "experiments"   # the argument wins
    mp.setenv("PSTN_EXPERIMENTS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=f"experiments folder {tmp_path / 'nowhere'} does not exist"):
        runner.experiments_dir()
    mp.delenv("PSTN_EXPERIMENTS")
    mp.chdir(tmp_path)                                                # outside any clone: the installed copies
    installed = runner.installed_experiments()
    if installed is None:
        with pytest.raises(FileNotFoundError, match="set \\$PSTN_EXPERIMENTS"):
            runner.experiments_dir()
    else:
        assert runner.experiments_dir() == installed and "rotated_mnist" in runner.list_experiments()


def test_results_dir_order(clean_env, tmp_path):
    "argument > $PSTN_RESULTS > <clone>/_results > ./_results; nothing is created by asking."
    mp = clean_env
    mp.chdir(ROOT / "nbs")
    assert runner.results_dir() == ROOT / "_results"
    mp.setenv("PSTN_RESULTS", str(tmp_path / "env-results"))
    assert runner.results_dir() == tmp_path / "env-results"
    assert runner.results_dir(tmp_path / "arg") == tmp_path / "arg"
    mp.delenv("PSTN_RESULTS")
    mp.chdir(tmp_path)
    assert runner.results_dir() == tmp_path / "_results"
    assert list(tmp_path.iterdir()) == []


def test_environment_variables_end_to_end(tmp_path):
    "`pstn list` and `pstn run` without folder options use $PSTN_EXPERIMENTS and $PSTN_RESULTS, from any directory."
    env = {k: v for k, v in os.environ.items() if k not in ("PSTN_EXPERIMENTS", "PSTN_RESULTS")}
    env |= {"PSTN_EXPERIMENTS": str(TINY), "PSTN_RESULTS": str(tmp_path / "runs")}
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    res = subprocess.run([PSTN, "list"], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert res.returncode == 0 and res.stdout.split()[0] == "tiny", res.stdout + res.stderr
    res = subprocess.run([PSTN, "run", "tiny", "--no-progress"], capture_output=True, text=True, timeout=300, env=env,
                         cwd=cwd)
    assert res.returncode == 0, res.stderr
    (rec_file,) = (tmp_path / "runs").glob("tiny/smoke-*/record.json")
    rec = json.loads(rec_file.read_text())
    assert rec["notebook"] == str(TINY / "tiny.ipynb") and rec["metrics"]["total"] == 1.5   # 0.5 * (0 + 1 + 2)
    assert list(cwd.iterdir()) == []                                  # nothing written where it ran


def fake_run(folder: Path) -> Path:
    "A finished run folder as `run_experiment` leaves it, with figures and pieces of chosen sizes (bytes)."
    (folder / "pieces").mkdir(parents=True)
    rec = dict(experiment="tiny", profile="smoke", status="finished", metrics={"total": 1.5}, ad_hoc={},
               notebook="/x/tiny.ipynb", run_dir=str(folder), output_notebook=str(folder / "output.ipynb"),
               code={"pstn_version": "0", "package": "p", "notebook": "n", "package_path": "/x"})
    (folder / "record.json").write_text(json.dumps(rec))
    sizes = {"small.png": 1000, "limit.png": 1024, "big.png": 1025, "pieces/small.json": 10, "pieces/big.json": 3000}
    for name, n in sizes.items(): (folder / name).write_bytes(b"x" * n)
    return folder


def test_publish_skips_files_over_max_kb(tmp_path):
    run_dir = fake_run(tmp_path / "run")
    with pytest.warns(UserWarning) as caught:
        out = runner.publish(run_dir, dest=tmp_path / "pub", max_kb=1)
    assert out == tmp_path / "pub" / "experiments" / "tiny" / "smoke"
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    # at most 1 KB = 1024 bytes is kept (limit.png is exactly that); each larger file is named in a warning
    assert copied == ["limit.png", "pieces/small.json", "record.json", "small.png"]
    skipped = sorted(str(w.message).split(" (")[0] for w in caught)
    assert skipped == ["publish: skipped big.json", "publish: skipped big.png"] and all("> 1 KB)" in str(w.message)
                                                                                   for w in caught)
    assert (out / "small.png").read_bytes() == (run_dir / "small.png").read_bytes()
    rec = json.loads((out / "record.json").read_text())
    assert "run_dir" not in rec and "package_path" not in rec["code"] and rec["published_as"] == "smoke"
    with warnings.catch_warnings():                                   # a larger limit copies everything, silently
        warnings.simplefilter("error")
        out = runner.publish(run_dir, dest=tmp_path / "pub", max_kb=3)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "big.png", "limit.png", "pieces/big.json", "pieces/small.json", "record.json", "small.png"]
