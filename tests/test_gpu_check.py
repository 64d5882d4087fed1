"""benchmarks/gpu.py (`make gpu-check`) on a machine without a GPU: its dry run (on the CPU) writes every section of
the JSON and says it is a dry run; every cut of a paper profile names only parameters of its notebook and keeps the
profile's other values; one smoke run goes through the script on the CPU; and the real run, without CUDA, refuses
with exit code 2 and a message naming CUDA. Not marked `gpu`: all of this runs on a CPU (about 40 s here)."""
import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from pstn import runner

SCRIPT = ROOT / "benchmarks" / "gpu.py"
DEFAULT_OUT = ROOT / "results" / "benchmarks" / "gpu.json"
EXP_DIR = ROOT / "nbs" / "experiments"
EXPERIMENTS = sorted(runner.list_experiments(EXP_DIR))


def run_script(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def gpu_script():
    "benchmarks/gpu.py as a module (it imports `common` from its own folder, as when run as a script)."
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("pstn_gpu_check", SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(SCRIPT.parent))


def _stamp(p):
    return p.stat().st_mtime_ns if p.exists() else None


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    "The JSON of `gpu.py --dry-run --skip-smoke`: tests (skipped here), timings, all paper cuts checked."
    out = tmp_path_factory.mktemp("gpu_check") / "gpu.json"
    before = _stamp(DEFAULT_OUT)
    p = run_script("--dry-run", "--skip-smoke", "--out", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert _stamp(DEFAULT_OUT) == before, "a dry run must not touch results/benchmarks/gpu.json"
    return json.loads(out.read_text())


def test_dry_run_structure(dry_run):
    d = dry_run
    assert d["dry_run"] is True and d["device"] == "cpu" and d["complete"] is True and d["ok"] is True
    assert d["sections_done"] == ["tests", "timings", "paper"] and d["skipped_sections"] == ["smoke"]
    assert d["experiments"] == EXPERIMENTS and d["smoke"]["runs"] == []
    for k in ("torch", "python", "cpu_model", "hardware", "command", "date_utc", "started_utc", "total_wall_s"):
        assert k in d, k
    assert d["total_wall_s"] > 0
    if not torch.cuda.is_available(): assert d["gpu"] is None

    t = d["tests"]
    assert t["returncode"] == 0 and t["total"] >= 1 and t["failing"] == []
    assert t["total"] == t["passed"] + t["failed"] + t["errors"] + t["skipped"]
    if not torch.cuda.is_available(): assert t["skipped"] == t["total"]       # every test is marked gpu

    tm = d["timings"]
    assert tm["settings"]["device"] == "cpu" and tm["settings"]["repeats"] == 3
    assert {"student_t_B64", "student_t_B256", "cpab1d", "cpab2d"} <= set(tm)
    pairs = [tm[k][s][f] for k in ("student_t_B64", "student_t_B256") for s in ("forward", "forward_backward")
             for f in ("sample_theta", "_sample_theta")]
    pairs += [tm[k][s] for k in ("cpab1d", "cpab2d") for s in ("forward", "forward_backward")]
    for r in pairs:
        assert r["ours_ms"] > 0 and r["reference_ms"] > 0
        ratio = r.get("ratio", r.get("ratio_float64_to_float32"))
        assert math.isclose(ratio, r["ours_ms"] / r["reference_ms"], rel_tol=1e-9)
    assert tm["cpab2d"]["max_abs_diff_float32_vs_float64"] < 1e-3

    label = d["paper"]["estimate_label"]
    assert label == "an upper-bound estimate by linear scaling of the timed cut run (setup counted in each unit)"
    runs = d["paper"]["runs"]
    assert [r["experiment"] for r in runs] == EXPERIMENTS
    for r in runs:
        assert r["status"] == "validated" and r["accepted_by_resolve_parameters"] is True, r
        assert r["overrides"]["device"] == "cpu" and r["full_estimate_s"] is None
        kinds, scale = r["work_units"]["kinds"], r["work_units"]["scale"]
        assert kinds and all(k["cut"] > 0 and k["full"] >= k["cut"] for k in kinds), r
        assert scale == max(k["ratio"] for k in kinds) and scale >= 1
        assert set(r["changed"]) <= set(r["overrides"])


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_paper_cut_accepted_and_keeps_the_profile(gpu_script, name):
    "The cut's overrides (as the GPU run passes them) resolve for 'paper'; nothing else of the profile changes."
    nb = EXP_DIR / f"{name}.ipynb"
    paper, _ = runner.resolve_parameters(nb, "paper")
    overrides = {**gpu_script.PAPER_CUTS[name]["overrides"](paper), "device": "cuda"}
    cut, _ = runner.resolve_parameters(nb, "paper", overrides=overrides)
    assert set(overrides) <= set(runner.notebook_parameters(nb))
    for k in set(paper) - set(overrides):                       # data sizes, models, batch size, S, w, ...
        assert cut[k] == paper[k], k
    plan = gpu_script.plan_cut(name, nb, "paper", "cuda")
    assert plan["overrides"] == overrides and plan["work_units"]["scale"] > 1


def test_paper_cuts_cover_every_experiment(gpu_script):
    assert set(gpu_script.PAPER_CUTS) == set(EXPERIMENTS)
    cut = lambda name: gpu_script.plan_cut(name, EXP_DIR / f"{name}.ipynb", "paper", "cuda")
    assert cut("rotated_mnist")["work_units"]["scale"] == 90                        # 30 localiser epochs x 3 seeds / 1
    assert cut("mnist_subsets")["overrides"]["train_steps"] == math.ceil(10000 / 64)
    assert cut("failure_mode")["overrides"]["depths"] == [5]                        # the costliest depth


def test_parse_junit(gpu_script):
    xml = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
      <testcase classname="tests.test_gpu" name="test_a[x]" time="0.1"/>
      <testcase classname="tests.test_gpu" name="test_b" time="0.1">
        <failure message="AssertionError: 1 != 2">trace</failure></testcase>
      <testcase classname="tests.test_gpu" name="test_c" time="0.1">
        <error message="fixture failed">trace</error></testcase>
      <testcase classname="tests.test_gpu" name="test_d" time="0.0"><skipped message="no CUDA">why</skipped></testcase>
    </testsuite></testsuites>"""
    r = gpu_script.parse_junit(xml)
    assert (r["passed"], r["failed"], r["errors"], r["skipped"], r["total"]) == (1, 1, 1, 1, 4)
    assert r["failing"] == [
        {"id": "tests/test_gpu.py::test_b", "kind": "failure", "message": "AssertionError: 1 != 2"},
        {"id": "tests/test_gpu.py::test_c", "kind": "error", "message": "fixture failed"}]


def test_dry_run_smoke_on_the_cpu(tmp_path):
    "One experiment's smoke profile through the script, on the CPU (fashion_placement: the fastest smoke here)."
    out = tmp_path / "gpu.json"
    p = run_script("--dry-run", "--skip-tests", "--skip-timings", "--skip-paper", "--only", "fashion_placement",
                   "--out", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["dry_run"] is True and d["sections_done"] == ["smoke"] and d["tests"] is None and d["timings"] is None
    (r,) = d["smoke"]["runs"]
    assert r["experiment"] == "fashion_placement" and r["status"] == "finished" and r["error"] is None
    assert r["overrides"] == {"device": "cpu"} and r["duration_s"] > 0 and r["metrics"]


def test_dry_run_never_writes_the_published_file():
    p = run_script("--dry-run", "--skip-tests", "--skip-timings", "--skip-smoke", "--skip-paper",
                   "--out", str(DEFAULT_OUT))
    assert p.returncode == 2 and "never writes" in p.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the script would run instead of refusing")
def test_refuses_without_cuda():
    before = _stamp(DEFAULT_OUT)
    p = run_script()
    assert p.returncode == 2, p.stdout + p.stderr
    assert "CUDA" in p.stderr and "--dry-run" in p.stderr
    assert _stamp(DEFAULT_OUT) == before
