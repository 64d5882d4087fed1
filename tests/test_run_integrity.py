"""Run integrity (issue 14): a result is reused only by the same computation, never lost to a concurrent run,
and bad parameters are refused before anything runs. On the real experiments and the `pstn` command; the
mechanisms themselves are tested in nbs/13_runner.ipynb."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT
from pstn.runner import list_experiments, resolve_parameters, run_experiment, publish

PSTN = str(Path(sys.executable).parent / "pstn")


@pytest.fixture
def exps(tmp_path: Path) -> Path:
    "A copy of the tests' tiny experiment, whose code can be edited, with a cell that sleeps `nap` seconds."
    d = tmp_path / "exps"
    d.mkdir()
    nb = nbformat.read(ROOT / "tests" / "experiments" / "tiny.ipynb", as_version=4)
    nb.cells[1].source += "\nnap = 0.0"
    nb.cells.insert(2, nbformat.v4.new_code_cell("import time\ntime.sleep(nap)"))
    code = next(c for c in nb.cells if "total = scale * sum(range(n))" in c.source)   # a resumable piece, as in
    code.source = code.source.replace("total = scale * sum(range(n))",                  # the real experiments
                                      "from pstn.runner import resumable\n"
                                      "total = resumable('total', lambda: scale * sum(range(n)))")
    nbformat.write(nb, d / "tiny.ipynb")
    shutil.copy(ROOT / "tests" / "experiments" / "tiny.yml", d / "tiny.yml")
    return d


def pstn(*args, exps, results, **kw):
    return subprocess.Popen([PSTN, *args, "--experiments-dir", str(exps), "--results-dir", str(results), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_changed_code_is_a_new_run(exps: Path, tmp_path: Path):
    "After the notebook's code changes, a rerun computes again instead of returning the old results."
    res = tmp_path / "r"
    first = run_experiment("tiny", exp_dir=exps, results=res, progress=False)
    nb = nbformat.read(exps / "tiny.ipynb", as_version=4)
    code = next(c for c in nb.cells if "lambda: scale" in c.source)
    code.source = code.source.replace("lambda: scale * sum(range(n))", "lambda: 10 * scale * sum(range(n))")
    nbformat.write(nb, exps / "tiny.ipynb")
    second = run_experiment("tiny", exp_dir=exps, results=res, progress=False)
    assert second["run_id"] != first["run_id"]
    assert second["metrics"]["total"] == 10 * first["metrics"]["total"] and not second["resumed"]
    assert second["code"]["notebook"] != first["code"]["notebook"]


def test_two_concurrent_runs_lose_nothing(exps: Path, tmp_path: Path):
    "A second identical run, started while the first runs, refuses with one line; the first keeps its metrics."
    res = tmp_path / "r"
    a = pstn("run", "tiny", "-p", "nap", "6", exps=exps, results=res)
    deadline = time.time() + 60
    while time.time() < deadline and not list(res.glob("tiny/*/output.ipynb")):
        time.sleep(0.2)
    assert list(res.glob("tiny/*/output.ipynb")), "the first run did not start"
    b = pstn("run", "tiny", "-p", "nap", "6", exps=exps, results=res)
    out_b, err_b = b.communicate(timeout=120)
    out_a, err_a = a.communicate(timeout=120)
    assert a.returncode == 0, err_a
    assert b.returncode == 1 and "another run of this configuration is using" in err_b, (b.returncode, err_b)
    assert "Traceback" not in err_b and len(err_b.strip().splitlines()) == 1, err_b
    (rec_file,) = res.glob("tiny/*/record.json")
    rec = json.loads(rec_file.read_text())
    assert rec["status"] == "finished" and rec["metrics"]["total"] == 1.5, rec
    assert publish(rec_file.parent, dest=tmp_path / "pub", as_name="napping").is_dir()


@pytest.mark.parametrize("name, overrides, message", [
    ("rotated_mnist", {"train_size": "-5"}, "parameter 'train_size': expected min 1, max 60000; got -5"),
    ("ucr", {"datasets": "FaceAll"}, "write [FaceAll] for a list of one"),
    ("ucr", {"datasets": "[FaceAl]"}, "got 'FaceAl'"),
    ("mnist_subsets", {"sizes": "[30, 0.5]"}, "'sizes[1]' is an int"),
    ("fashion_placement", {"loc_lr": "0"}, "expected gt 0; got 0.0"),
])
def test_bad_parameters_are_refused(name, overrides, message):
    with pytest.raises(ValueError, match=None) as e:
        resolve_parameters(list_experiments()[name], "smoke", overrides=overrides)
    assert message in str(e.value), str(e.value)


def test_every_profile_respects_its_limits():
    "The limits would be useless if a shipped profile broke them: every profile of every experiment resolves."
    for name, nb in list_experiments().items():
        for profile in ("smoke", "cpu", "paper"):
            resolve_parameters(nb, profile)


def test_publish_refuses_a_changed_profile_before_running(exps: Path, tmp_path: Path):
    "`--publish` with -p values that change the profile is refused at once; `--publish-as NAME` publishes it."
    res, pub = tmp_path / "r", tmp_path / "published"
    p = pstn("run", "tiny", "--profile", "cpu", "-p", "seed", "3", "--publish", exps=exps, results=res)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "changes the 'cpu' profile (seed=3)" in err and "--publish-as" in err, err
    assert not res.exists() or not list(res.glob("tiny/*/record.json")), "refused, yet it ran"
    rec = run_experiment("tiny", "cpu", overrides={"seed": "3"}, exp_dir=exps, results=res, progress=False)
    with pytest.raises(ValueError, match="changes its profile 'cpu'"):
        publish(rec, dest=pub)
    out_dir = publish(rec, dest=pub, as_name="cpu-seed3")
    assert out_dir == pub / "experiments" / "tiny" / "cpu-seed3"
    assert json.loads((out_dir / "record.json").read_text())["ad_hoc"] == {"seed": 3}
