"""The installed `pstn` command, end to end, on the tiny notebook in tests/experiments."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

PSTN = str(Path(sys.executable).parent / "pstn")
EXPS = str(ROOT / "tests" / "experiments")


def pstn(*args, results=None):
    cmd = [PSTN, *args]
    if args and args[0] in ("list", "params", "run"): cmd += ["--experiments-dir", EXPS]
    if results is not None: cmd += ["--results-dir", str(results), "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def git_state() -> dict | None:
    "The checkout's git state as the runner records it ({commit, dirty}), read with git itself; None outside a work tree."
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        if head.returncode != 0: return None
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    except OSError:                                                   # no git on this machine
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(st.stdout.strip())}


def test_help_and_version():
    res = pstn("--help")
    assert res.returncode == 0 and all(c in res.stdout for c in ("list", "params", "run"))
    res = pstn("--version")
    assert res.returncode == 0 and res.stdout.startswith("pstn ")


def test_list_and_params():
    res = pstn("list")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "tiny" and "[smoke, cpu, paper]" in res.stdout
    res = pstn("params", "tiny")
    rows = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines()[1:]}
    assert rows["n"] == ["3", "10", "100"] and rows["scale"] == ["0.5", "0.5", "1.0"], res.stdout


def test_run_records_overrides(tmp_path: Path):
    before = git_state()
    res = pstn("run", "tiny", "--profile", "cpu", "-p", "scale", "2", "-p", "label", "hello", "-p", "seed", "4",
               results=tmp_path)
    after = git_state()
    assert res.returncode == 0, res.stderr
    (rec_file,) = tmp_path.glob("tiny/cpu-*/record.json")
    rec = json.loads(rec_file.read_text())
    assert rec["status"] == "finished" and rec["profile"] == "cpu"
    assert rec["parameters"] == {"n": 10, "scale": 2.0, "seed": 4, "fail": False, "label": "hello"}
    assert rec["overrides"] == {"n": 10, "scale": 2.0, "seed": 4, "label": "hello"}
    assert rec["metrics"] == {"total": 90.0, "n_seen": 10, "label": "hello", "run_dir": str(rec_file.parent)}
    assert rec["hardware"]["torch"] and rec["hardware"]["cpu_count"] >= 1 and rec["duration_s"] > 0
    assert rec["seed"] == 4                                          # not the default 0: the seed given on the command line
    # The git state of the checkout holding the notebook, as git reports it (read before and after the run, in case
    # someone commits or edits meanwhile); None when the notebook is not in a git work tree.
    assert rec["git"] in (before, after), (rec["git"], before, after)
    if before is not None: assert set(rec["git"]) == {"commit", "dirty"} and len(rec["git"]["commit"]) == 40
    out = nbformat.read(rec["output_notebook"], as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "label = \"hello\"" in injected[0].source
    assert "total = 90.0" in res.stdout


def test_params_file_and_same_config_same_folder(tmp_path: Path):
    f = tmp_path / "mine.yaml"
    f.write_text("n: 4\nseed: 7\n")
    for _ in range(2):
        res = pstn("run", "tiny", "-f", str(f), results=tmp_path / "r")
        assert res.returncode == 0, res.stderr
    (rec_file,) = (tmp_path / "r").glob("tiny/*/record.json")     # the rerun reused the folder
    rec = json.loads(rec_file.read_text())
    assert (rec["parameters"]["n"], rec["seed"], rec["metrics"]["total"]) == (4, 7, 3.0)


def test_failed_run_names_cell_and_keeps_output(tmp_path: Path):
    res = pstn("run", "tiny", "-p", "fail", "true", results=tmp_path)
    assert res.returncode == 1
    assert "failed in cell" in res.stderr and "if fail:" in res.stderr and "RuntimeError: asked to fail" in res.stderr
    (rec_file,) = tmp_path.glob("tiny/*/record.json")
    rec = json.loads(rec_file.read_text())
    assert rec["status"] == "failed" and rec["error"]["ename"] == "RuntimeError"
    assert rec["metrics"]["n_seen"] == 3                         # cells before the failure ran and reported
    assert Path(rec["output_notebook"]).is_file()


@pytest.mark.parametrize("args, message", [
    (("run", "nope"), "known experiments: tiny"),
    (("run", "tiny", "-p", "epochs", "3"), "'epochs' is not a parameter"),
    (("run", "tiny", "-p", "n", "2.5"), "is an int"),
    (("params", "nope"), "unknown experiment"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    res = pstn(*args, results=tmp_path if args[0] == "run" else None)
    assert res.returncode == 2 and message in res.stderr, (res.returncode, res.stderr)


def test_bad_profile_is_refused():
    res = pstn("run", "tiny", "--profile", "huge")
    assert res.returncode == 2 and "invalid choice: 'huge'" in res.stderr
