"""The GPU check: tests, experiments and float64 timings on a CUDA device, in one run (`make gpu-check`).

Run from the repository root, on a machine with CUDA:

    .venv/bin/python benchmarks/gpu.py                 # writes results/benchmarks/gpu.json
    .venv/bin/python benchmarks/gpu.py --dry-run       # the same logic on the CPU, tiny; writes a temporary file

Sections, in the order they run (the JSON is rewritten after each experiment and each section, so an interrupted
run keeps what it finished; `"complete": true` marks a finished one):

1. tests: `pytest -m gpu tests/test_gpu.py` in a subprocess; passed / failed / skipped counts and the id and
   message of each failing test, from its JUnit XML.
2. timings: the float64 paths on the device, each against a float32 reference timed in the same run (warm-up,
   CUDA synchronisation around each timed block, median of the repeats; ours and the reference run back to back
   in each repeat so that both see the same load):
   - the P-STN's Student-t draw, `pstn.distributions.sample_theta(mu, alpha, beta, S)` (float32 in and out,
     float64 inside; its argument checks read values on the host) and the unchecked `_sample_theta` that the
     models' training steps call, against `torch.distributions.StudentT(2 alpha, mu, sqrt(beta / alpha),
     validate_args=False).rsample((S,))` in float32; D = 6, S = 10, B = 64 and B = 4096; forward and forward +
     backward (gradients to mu and beta);
   - CPAB 1-D: `pstn.cpab.CPAB1D(10).transform` (float64 inside; 10 cells, as the ucr experiment) of 256 points,
     batch 64, forward + backward to theta, against `F.grid_sample` (float32, bilinear) of a
     (64, 1, 1, 256) signal with a (64, 1, 256, 2) grid, forward + backward to signal and grid;
   - CPAB 2-D: `pstn.cpab2d.CPAB2D((4, 4)).transform` of a 28 x 28 point grid, batch 64, forward + backward, in
     float64 against the same in float32.
   Timings are run before the experiments: they take seconds, the experiments minutes.
3. smoke: every experiment at its smoke profile (the notebook's defaults) on the device, through
   `pstn.runner.run_experiment`: status, duration, metrics, error.
4. paper: one timed cut of each experiment's paper profile: the paper profile's data sizes, models and batch
   size, cut to one epoch (or one unit of work; see PAPER_CUTS for each cut and its reasons). Each record has the
   overrides, the work-unit counts of the full paper profile and of the cut, and `full_estimate_s` =
   duration_s x scale, an upper-bound estimate of the full paper run by linear scaling (see `work_units`).

Without CUDA the script refuses (exit code 2) unless `--dry-run` is given: then the same logic runs on the CPU
with device "cpu": the tests (which skip without CUDA), the timings at small shapes with 3 repeats, the smoke
profiles, and for the paper section only the planning: each cut's overrides are checked against its notebook's
parameters with `pstn.runner.resolve_parameters` and its work units counted, without running it. A dry run writes
to --out or a temporary file, never to results/benchmarks/gpu.json, and its JSON says `"dry_run": true`.
Exit code: 0 when every test passed and every run finished (or, in a dry run, every cut was accepted),
1 otherwise, 2 for a usage error or no CUDA.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
import torch.nn.functional as F

from common import now_utc, run_info
from pstn import runner

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "benchmarks" / "gpu.json"
SECTIONS = ("tests", "timings", "smoke", "paper")
ESTIMATE_LABEL = "an upper-bound estimate by linear scaling of the timed cut run (setup counted in each unit)"


# ---------------------------------------------------------------------------------------------------------------
# The cuts of the paper profiles and their work units.
#
# `overrides(p)` maps the resolved parameters p of a profile to the cut's overrides (device added by the caller),
# so that the cut keeps that profile's data sizes, models and batch size. `units` lists the kinds of work a run
# repeats, each a count of the parameters p. The scale of a cut is max over the kinds of (count in the full
# profile / count in the cut): every kind of work, and the setup (kernel start, imports, data loading and
# preparation, tests, figures), is then multiplied by at least as much as it grows, so duration_s x scale is an
# upper bound of the full run's time, provided that one unit of a kind costs no more in the full run than in the
# cut (the notes say why it does not). Work that the cut does not run at all (grid searches, calibration runs) is
# counted inside a kind it runs that costs at least as much per unit.

def _ceil_div(a: int, b: int) -> int: return -(-a // b)


def _steps_and_epochs(size: int, steps: int, batch_size: int) -> int:
    "Optimiser steps plus epoch boundaries of one mnist_subsets training run: epochs = ceil(steps / steps per epoch)."
    per_epoch = _ceil_div(size, batch_size)
    epochs = _ceil_div(steps, per_epoch)
    return epochs * per_epoch + epochs


def _subsets_steps(p: dict) -> int:
    one = lambda size, steps=p["train_steps"]: _steps_and_epochs(size, steps, p["batch_size"])
    main = p["folds"] * sum(one(s) for s in p["sizes"])                       # CNN, STN and P-STN per size and fold
    grid = len(p["w_grid"]) * sum(one(s) for s in p["sizes"])                 # one P-STN per w and size, fold 0
    cal = 0
    if 100 in p["sizes"]:                                                     # the calibration study on MNIST100
        ncw = len(p["calibration_w"])
        cal = ncw * p["folds"] * one(100) + (2 + ncw) * _steps_and_epochs(100, 2 * _ceil_div(p["train_steps"], 2),
                                                                         p["batch_size"])
    return main + grid + cal


def _subsets_evaluations(p: dict) -> int:
    n = (p["folds"] + len(p["w_grid"])) * len(p["sizes"])
    if 100 in p["sizes"]: n += len(p["calibration_w"]) * p["folds"] + 2 + len(p["calibration_w"])
    return n


def _seed_epoch_cut(work: str, note: str) -> dict:
    """The cut of an experiment whose work is `seeds` x `epochs` of the same training: one
    seed, one epoch; `work` names what one epoch of one seed trains."""
    return dict(overrides=lambda p: {"seeds": 1, "epochs": 1},
                units={f"{work}, summed over the seeds": lambda p: p["seeds"] * p["epochs"]},
                note=note)


PAPER_CUTS = {
    "rotated_mnist": dict(
        overrides=lambda p: {"cnn_epochs": 1, "loc_epochs": 1, "seeds": 1},
        units={"CNN epochs over train_size images": lambda p: p["cnn_epochs"],
               "localiser epochs (STN and P-STN) over train_size rotated images, summed over the seeds":
                   lambda p: p["loc_epochs"] * p["seeds"]},
        note="one epoch of each training stage on all of MNIST, one localiser seed, batch, S and models as in the "
             "paper profile. Every epoch of a stage costs the same (same data, same model)."),
    "fashion_placement": dict(
        overrides=lambda p: {"cnn_epochs": 1, "loc_epochs": 1, "seeds": 1},
        units={"CNN epochs over cnn_train_size images": lambda p: p["cnn_epochs"],
               "localiser epochs (STN and P-STN) over train_size placed images, summed over the seeds":
                   lambda p: p["loc_epochs"] * p["seeds"]},
        note="one epoch of each training stage on all of Fashion-MNIST, one localiser seed (the P-STN's one-epoch warm-up of spread "
             "and KL weight falls in it; the warm-up changes values, not the work of a step)."),
    "mnist_subsets": dict(
        overrides=lambda p: {"sizes": [max(p["sizes"])], "folds": 1,
                             "train_steps": _ceil_div(max(p["sizes"]), p["batch_size"]), "w_grid": []},
        units={"optimiser steps plus epoch boundaries, each counted as one step of the CNN + STN + P-STN triple "
               "(grid-search and calibration runs, one model each, counted as triples)": _subsets_steps,
               "evaluations of a triple on test_size images (validations and calibration predictions counted "
               "as one each)": _subsets_evaluations},
        note="the largest subset, one fold, one epoch of it (train_steps = ceil(size / batch_size)), the paper's "
             "w instead of the grid search (whose runs, and the calibration runs on MNIST100, are counted in "
             "the units). A step of a smaller subset has a batch no larger; an epoch boundary (a new loader, one "
             "read-back of the loss) is assumed to cost no more than one step, which it is counted as."),
    "ucr": dict(
        overrides=lambda p: {"repetitions": 1, "epochs": 1, "w_grid": []},
        units={"epochs of CNN, STN and P-STN over every listed data set (a grid-search epoch, one P-STN on "
               "75 % of a set, counted as one)": lambda p: (p["repetitions"] + len(p["w_grid"])) * p["epochs"],
               "epochs of the figure's P-STN on the first data set": lambda p: p["epochs"],
               "evaluations of the three models on every listed data set's test set (a grid-search "
               "validation counted as one)": lambda p: p["repetitions"] + len(p["w_grid"])},
        note="one repetition, one epoch, the paper's w instead of the grid search; all five data sets are kept "
             "(rather than one) because their sizes and series lengths differ: one epoch of all five takes "
             "seconds on a GPU, and the scaling then needs no per-data-set weights."),
    "failure_mode": dict(
        overrides=lambda p: {"seeds": 1, "epochs": 1, "depths": [max(p["depths"])]},
        units={"epochs of the four models at one depth and one seed over train_size images (the cut runs the "
               "deepest classifier, the costliest)": lambda p: p["seeds"] * len(p["depths"]) * p["epochs"],
               "pieces' setups per depth and seed (rotating the data, building, testing, localising)":
                   lambda p: p["seeds"] * len(p["depths"])},
        note="one seed, one epoch, the deepest depth only (5 hidden layers: a shallower classifier costs less "
             "per epoch, so the scaling stays an upper bound), all of MNIST."),
    "loss_landscape": dict(
        overrides=lambda p: {"cnn_epochs": 1, "n_digits": max(1, round(p["n_digits"] / p["cnn_epochs"]))},
        units={"CNN epochs over train_size images": lambda p: p["cnn_epochs"],
               "digits whose landscapes (n_grid angles, float64) and curve statistics are computed":
                   lambda p: p["n_digits"]},
        note="one CNN epoch, and the digits cut by the same factor (2000 -> 200), since the landscapes and the "
             "curve statistics (NumPy on the CPU, about 30 ms per digit on a 2-core Xeon) are linear in the "
             "digits and would otherwise dominate the cut: the scale stays 10 and the cut stays short. n_grid "
             "(720) and mc_samples are unchanged."),
    "distorted_mnist": _seed_epoch_cut(
        "epochs of every model in every setting over train_size distorted images",
        "one seed, one epoch of every model in every setting, all of MNIST. The distorted sets are made "
        "once per run in either case (on the CPU), so scaling the whole cut overstates the full time a "
        "little."),
    "mnist_addition": _seed_epoch_cut(
        "epochs of the five models over train_size digit pairs",
        "one seed, one epoch of every model on all the pairs; S and the models as in the paper profile."),
    "co_localisation": dict(
        overrides=lambda p: {"seeds": 1, "epochs": 1, "cnn_epochs": 1},
        units={"epochs of the digit classifier over cnn_train_size images": lambda p: p["cnn_epochs"],
               "hinge-loss epochs of every class in T and TC, summed over the seeds":
                   lambda p: p["seeds"] * p["epochs"]},
        note="one epoch of the encoder, one seed and one epoch of the hinge-loss optimisation for every class "
             "and setting."),
    "two_digits": _seed_epoch_cut(
        "epochs of the CNN and of the STN in every start and padding",
        "one seed, one epoch of every model and setting on all the pairs."),
    "robustness": _seed_epoch_cut(
        "epochs of CNN, STN and P-STN over train_size images",
        "one seed, one epoch of each model; the sweeps' test sets are evaluated in full in either case, so "
        "scaling the whole cut overstates the full time a little."),
    "feature_maps": _seed_epoch_cut(
        "epochs of every network in every setting over train_size images",
        "one seed, one epoch of every network in every setting, all of MNIST."),
}


def work_units(name: str, full: dict, cut: dict) -> dict:
    "Counts of each kind of work in the full profile and in the cut, and the scale (the largest ratio)."
    kinds = []
    for kind, count in PAPER_CUTS[name]["units"].items():
        nf, nc = count(full), count(cut)
        if nc <= 0: raise ValueError(f"{name}: the cut runs no {kind!r}; the units must count only work it runs")
        kinds.append({"unit": kind, "full": nf, "cut": nc, "ratio": nf / nc})
    return {"kinds": kinds, "scale": max(max(k["ratio"] for k in kinds), 1.0)}


def plan_cut(name: str, nb: Path, profile: str, device: str) -> dict:
    """The cut of `profile` for experiment `name`: its overrides (checked by `resolve_parameters`, which raises
    ValueError for a name that is not a parameter of the notebook or a value of the wrong type), the parameters
    that change (profile value and cut value) and the work units of the full profile and of the cut."""
    full, _ = runner.resolve_parameters(nb, profile)
    cut_overrides = PAPER_CUTS[name]["overrides"](full)
    cut, _ = runner.resolve_parameters(nb, profile, overrides={**cut_overrides, "device": device})
    changed = {k: {profile: full[k], "cut": cut[k]} for k in full if cut[k] != full[k]}
    return {"profile": profile, "overrides": {**cut_overrides, "device": device}, "changed": changed,
            "work_units": work_units(name, full, cut), "note": PAPER_CUTS[name]["note"]}


# ---------------------------------------------------------------------------------------------------------------
# Output

class Record:
    "The JSON being built; `save()` rewrites the file atomically (a reader never sees half of it)."
    def __init__(self, path: Path, data: dict):
        self.path, self.data, self.t0 = path, data, time.perf_counter()

    def save(self) -> None:
        self.data["finished_utc"] = now_utc()
        self.data["total_wall_s"] = round(time.perf_counter() - self.t0, 3)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        tmp.replace(self.path)

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# 1. tests

def junit_test_id(classname: str, name: str) -> str:
    "pytest's node id from a JUnit test case: `tests/test_gpu.py::test_x[param]`."
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        f = Path(*parts[:i]).with_suffix(".py")
        if (ROOT / f).is_file(): return "::".join([f.as_posix(), *parts[i:], name])
    return f"{classname}::{name}"


def parse_junit(xml_text: str) -> dict:
    "Counts and failing tests (id, kind, first line of the message) of a pytest JUnit XML report."
    root = ET.fromstring(xml_text)
    counts, failing = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}, []
    for case in root.iter("testcase"):
        tid = junit_test_id(case.get("classname", ""), case.get("name", ""))
        bad = [c for c in case if c.tag in ("failure", "error")]
        if bad:
            kind = "failed" if any(c.tag == "failure" for c in bad) else "errors"
            counts[kind] += 1
            msg = (bad[0].get("message") or (bad[0].text or "")).strip()
            failing.append({"id": tid, "kind": bad[0].tag, "message": msg.splitlines()[0][:500] if msg else ""})
        elif any(c.tag == "skipped" for c in case): counts["skipped"] += 1
        else: counts["passed"] += 1
    return {**counts, "total": sum(counts.values()), "failing": failing}


def run_tests(timeout_s: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="pstn-gpu-tests-") as d:
        xml = Path(d) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-p", "no:cacheprovider",
               f"--junitxml={xml}"]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
            rc, out = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out = None, f"timed out after {timeout_s} s\n" + ((e.stdout or b"").decode(errors="replace")
                                                                 if isinstance(e.stdout, bytes) else (e.stdout or ""))
        res = {"command": " ".join(["python", *cmd[1:-1], "--junitxml=<tmp>"]), "returncode": rc,
               "duration_s": round(time.perf_counter() - t0, 3)}
        if xml.is_file(): res.update(parse_junit(xml.read_text()))
        else: res.update(error="no JUnit report (pytest did not get to write one)")
        if rc != 0: res["output_tail"] = out[-3000:]
        return res


# ---------------------------------------------------------------------------------------------------------------
# 2. timings

def _sync(device: torch.device) -> None:
    if device.type == "cuda": torch.cuda.synchronize(device)


def _per_call(fn, device, inner: int) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(inner): fn()
    _sync(device)
    return (time.perf_counter() - t0) / inner


def time_pair(ours, ref, device, repeats: int, warmup: int, block_s: float) -> dict:
    """Median seconds per call of `ours` and `ref`, run back to back in each repeat, after `warmup` calls each.
    Each timed block is synchronised and runs a function `inner` times, enough for about `block_s` seconds."""
    for _ in range(warmup): ours(); ref()
    inner = {}
    for k, fn in (("ours", ours), ("reference", ref)):
        inner[k] = max(1, min(1000, int(block_s / max(_per_call(fn, device, 1), 1e-7)))) if block_s > 0 else 1
    t = {"ours": [], "reference": []}
    for _ in range(repeats):
        t["ours"].append(_per_call(ours, device, inner["ours"]))
        t["reference"].append(_per_call(ref, device, inner["reference"]))
    med = {k: statistics.median(v) for k, v in t.items()}
    return {"ours_ms": 1e3 * med["ours"], "reference_ms": 1e3 * med["reference"],
            "ratio": med["ours"] / med["reference"], "calls_per_block": inner, "repeats": repeats,
            "ours_range_ms": [1e3 * min(t["ours"]), 1e3 * max(t["ours"])],
            "reference_range_ms": [1e3 * min(t["reference"]), 1e3 * max(t["reference"])]}


def _grad_step(fn, leaves, g):
    "fn() -> output; its backward with output gradient g, gradients of `leaves` cleared first."
    def run():
        for x in leaves: x.grad = None
        fn().backward(g)
    return run


def time_student_t(device, B: int, D: int, S: int, opts: dict) -> dict:
    from pstn.distributions import _sample_theta, sample_theta
    g = torch.Generator().manual_seed(B)
    mu = torch.randn(B, D, generator=g).to(device)
    beta = (0.001 + 0.1 * torch.rand(B, D, generator=g)).to(device)
    alpha = 1.0
    a = torch.tensor(alpha, device=device)
    ref_dist = lambda m, b: torch.distributions.StudentT(2 * a, m, torch.sqrt(b / a), validate_args=False)
    ours = lambda: sample_theta(mu, alpha, beta, S)
    unchecked = lambda: _sample_theta(mu, a, beta, S)
    ref = lambda: ref_dist(mu, beta).rsample((S,))
    out, r = ours(), ref()
    assert out.shape == r.shape == (S, B, D) and out.dtype == r.dtype == torch.float32, (out.shape, r.shape)
    mur, betar = mu.clone().requires_grad_(), beta.clone().requires_grad_()
    gout = torch.randn(S, B, D, generator=g).to(device)
    fb = lambda fn: _grad_step(fn, (mur, betar), gout)
    return {"shape": {"B": B, "D": D, "S": S}, "alpha": alpha,
            "forward": {"sample_theta": time_pair(ours, ref, device, **opts),
                        "_sample_theta": time_pair(unchecked, ref, device, **opts)},
            "forward_backward": {
                "sample_theta": time_pair(fb(lambda: sample_theta(mur, alpha, betar, S)),
                                          fb(lambda: ref_dist(mur, betar).rsample((S,))), device, **opts),
                "_sample_theta": time_pair(fb(lambda: _sample_theta(mur, a, betar, S)),
                                           fb(lambda: ref_dist(mur, betar).rsample((S,))), device, **opts)}}


def time_cpab1d(device, opts: dict, B: int = 64, N: int = 256, nc: int = 10) -> dict:
    from pstn.cpab import CPAB1D
    tess = CPAB1D(nc)
    g = torch.Generator().manual_seed(0)
    theta = tess.sample_prior(B, generator=g).float().to(device).requires_grad_()
    x = torch.linspace(0, 1, N, device=device)
    gy = torch.randn(B, N, generator=g).to(device)
    with torch.no_grad(): y = tess.transform(x, theta)
    assert y.shape == (B, N) and y.dtype == torch.float32
    signal = torch.randn(B, 1, 1, N, generator=g).to(device).requires_grad_()
    grid = torch.stack([2 * y - 1, torch.zeros_like(y)], -1).view(B, 1, N, 2).detach().requires_grad_()
    gv = torch.randn(B, 1, 1, N, generator=g).to(device)
    gs = lambda v=signal, u=grid: F.grid_sample(v, u, mode="bilinear", padding_mode="zeros", align_corners=True)
    return {"ours": f"pstn.cpab.CPAB1D({nc}).transform(x (N,), theta (B, {tess.dim}) float32), float64 inside",
            "reference": "F.grid_sample float32, bilinear, zeros, align_corners=True, of a (B, 1, 1, N) signal",
            "shape": {"B": B, "N": N, "nc": nc, "theta_dim": tess.dim},
            "forward": time_pair(lambda: tess.transform(x, theta.detach()), lambda: gs(signal.detach(), grid.detach()),
                                 device, **opts),
            "forward_backward": time_pair(_grad_step(lambda: tess.transform(x, theta), (theta,), gy),
                                          _grad_step(gs, (signal, grid), gv), device, **opts)}


def time_cpab2d(device, opts: dict, B: int = 64, side: int = 28, tess_shape=(4, 4)) -> dict:
    from pstn.cpab2d import CPAB2D
    tess = CPAB2D(tess_shape)
    g = torch.Generator().manual_seed(0)
    th64 = tess.sample_prior(B, generator=g)
    u = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    pts64 = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)          # (side^2, 2), (x, y)
    gout64 = torch.randn(B, side * side, 2, generator=g, dtype=torch.float64)
    case = {}
    for dt in (torch.float32, torch.float64):
        th = th64.to(device, dt).requires_grad_()
        case[dt] = (th, pts64.to(device, dt), gout64.to(device, dt))
    (t32, p32, g32), (t64, p64, g64) = case[torch.float32], case[torch.float64]
    with torch.no_grad():
        diff = (tess.transform(p32, t32).double() - tess.transform(p64, t64)).abs().max().item()
    fwd = {"float64": lambda: tess.transform(p64, t64.detach()), "float32": lambda: tess.transform(p32, t32.detach())}
    res = {"ours": f"pstn.cpab2d.CPAB2D({tess_shape}).transform in float64", "reference": "the same in float32",
           "shape": {"B": B, "points": side * side, "tess": list(tess_shape), "theta_dim": tess.dim,
                     "steps": tess.steps},
           "max_abs_diff_float32_vs_float64": diff,
           "forward": time_pair(fwd["float64"], fwd["float32"], device, **opts),
           "forward_backward": time_pair(_grad_step(lambda: tess.transform(p64, t64), (t64,), g64),
                                         _grad_step(lambda: tess.transform(p32, t32), (t32,), g32), device, **opts)}
    for k in ("forward", "forward_backward"):                                  # name the ratio for what it is
        res[k]["ratio_float64_to_float32"] = res[k].pop("ratio")
    return res


SHAPES = {"student_t_B": [64, 4096], "cpab1d_B": 64, "cpab2d_B": 64}            # the GPU run
DRY_SHAPES = {"student_t_B": [64, 256], "cpab1d_B": 8, "cpab2d_B": 4}         # the dry run: seconds on a CPU


def run_timings(device, opts: dict, shapes: dict, rec: Record) -> dict:
    out = {"settings": {"device": str(device), "statistic": "median seconds per call", **opts,
                        "cuda_synchronised": device.type == "cuda",
                        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                        "ratio": "ours / reference (above 1: ours is slower)"}}
    cases = [*((f"student_t_B{B}", lambda B=B: time_student_t(device, B, 6, 10, opts)) for B in shapes["student_t_B"]),
             ("cpab1d", lambda: time_cpab1d(device, opts, B=shapes["cpab1d_B"])),
             ("cpab2d", lambda: time_cpab2d(device, opts, B=shapes["cpab2d_B"]))]
    for name, fn in cases:
        t0 = time.perf_counter()
        try:
            out[name] = fn()
            r = out[name]["forward_backward"]
            r = r.get("sample_theta", r)
            ratio = r.get("ratio", r.get("ratio_float64_to_float32"))
            rec.log(f"timing {name}: forward+backward {r['ours_ms']:.3f} ms vs {r['reference_ms']:.3f} ms "
                    f"({ratio:.2f}x) [{time.perf_counter() - t0:.1f} s]")
        except Exception as e:                                    # one failing case must not lose the others
            out[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            rec.log(f"timing {name}: ERROR {type(e).__name__}: {e}")
        rec.data["timings"] = out
        rec.save()
        if device.type == "cuda": torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------------------------------------------------------
# 3. and 4. experiments

def execute(name: str, profile: str, overrides: dict, results: Path) -> dict:
    "Run one experiment; the essentials of its record (status finished / failed / error)."
    t0 = time.perf_counter()
    try:
        r = runner.run_experiment(name, profile, overrides=overrides, results=results, progress=False)
    except runner.ExperimentFailed as e:
        r = e.record
    except Exception as e:                                        # bad parameters, missing data, kernel died, ...
        return {"status": "error", "duration_s": round(time.perf_counter() - t0, 3), "metrics": {},
                "error": {"ename": type(e).__name__, "evalue": str(e)[:2000]}, "run_id": None}
    err = r.get("error")
    if err: err = {k: (v[:2000] if isinstance(v, str) else v) for k, v in err.items()}
    return {"status": r["status"], "duration_s": r["duration_s"], "metrics": r.get("metrics") or {},
            "error": err, "run_id": r.get("run_id"), "injected": r.get("overrides")}


def run_smoke(names, device: str, results: Path, rec: Record) -> None:
    runs = rec.data["smoke"]["runs"]
    for name in names:
        r = {"experiment": name, "profile": "smoke", "overrides": {"device": device}, "status": "running",
             "started_utc": now_utc()}
        runs.append(r)
        rec.save()                                                # an interrupted run shows as such
        rec.log(f"smoke {name} ...")
        r.update(execute(name, "smoke", {"device": device}, results))
        rec.save()
        rec.log(f"smoke {name}: {r['status']} in {r['duration_s']} s"
                + (f" ({r['error']['ename']}: {r['error']['evalue'][:200]})" if r["error"] else ""))


def run_paper(names, device: str, results: Path, rec: Record, dry_run: bool) -> None:
    "Plan (and check) the cut of each paper profile, run it (not in a dry run) and scale its time to the full profile."
    exps = runner.list_experiments()
    runs = rec.data["paper"]["runs"]
    for name in names:
        entry = {"experiment": name, "profile": "paper"}
        runs.append(entry)
        try:
            if name not in PAPER_CUTS: raise KeyError(f"no paper cut declared for {name!r} in PAPER_CUTS")
            cut = plan_cut(name, exps[name], "paper", device)
        except Exception as e:
            entry.update(status="error", error={"ename": type(e).__name__, "evalue": str(e)[:2000]})
            rec.save(); rec.log(f"paper {name}: no valid cut: {type(e).__name__}: {e}"); continue
        scale = cut["work_units"]["scale"]
        entry.update(overrides=cut["overrides"], changed=cut["changed"], note=cut["note"],
                     work_units=cut["work_units"], accepted_by_resolve_parameters=True)
        if dry_run:
            entry.update(status="validated", duration_s=None, full_estimate_s=None)
            rec.save()
            rec.log(f"paper {name}: cut {cut['overrides']} accepted, scale {scale:g} (dry run: not run)")
            continue
        entry.update(status="running", started_utc=now_utc())
        rec.save()
        rec.log(f"paper {name}: cut {cut['overrides']}, scale {scale:g} ...")
        r = execute(name, "paper", cut["overrides"], results)
        est = round(r["duration_s"] * scale, 1) if r["status"] == "finished" else None
        entry.update(**r, full_estimate_s=est, full_estimate_h=None if est is None else round(est / 3600, 3),
                     full_estimate_label=ESTIMATE_LABEL)
        rec.save()
        rec.log(f"paper {name}: {r['status']} in {r['duration_s']} s" +
                (f"; full paper profile <= {est:.0f} s ({est / 3600:.2f} h)" if est is not None else
                 f" ({r['error']['ename']}: {r['error']['evalue'][:200]})" if r["error"] else ""))


# ---------------------------------------------------------------------------------------------------------------

def gpu_info() -> dict | None:
    if not torch.cuda.is_available(): return None
    info = {"name": torch.cuda.get_device_name(), "cuda_version": torch.version.cuda,
            "capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "device_count": torch.cuda.device_count(),
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            "cudnn": torch.backends.cudnn.version(), "driver": None}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        if q.returncode == 0: info["driver"] = q.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError): pass
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="run on the CPU with tiny settings; paper cuts are checked, not run")
    p.add_argument("--only", default="", help="comma-separated experiments (default: all)")
    for s in ("tests", "smoke", "paper", "timings"):
        p.add_argument(f"--skip-{s}", action="store_true", help=f"skip the {s} section")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 30; dry run 3)")
    p.add_argument("--results", type=Path, default=None,
                   help="folder for the experiments' run folders (default: a temporary folder, removed at the end)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"the JSON (default {DEFAULT_OUT.relative_to(ROOT)}; dry run: a temporary file)")
    args = p.parse_args(argv)

    known = list(runner.list_experiments())
    names = [n.strip() for n in args.only.split(",") if n.strip()] or known
    if bad := [n for n in names if n not in known]:
        print(f"gpu.py: unknown experiment(s) {', '.join(bad)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available() and not args.dry_run:
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"gpu.py: no CUDA device here (torch {torch.__version__}, {build}: torch.cuda.is_available() is "
              "False). This check needs a CUDA GPU: run it on a machine with one, or pass --dry-run to exercise "
              "it on the CPU.", file=sys.stderr)
        return 2
    if args.dry_run:
        out = args.out or Path(tempfile.gettempdir()) / f"pstn-gpu-check-dry-run-{os.getpid()}.json"
        if out.resolve() == DEFAULT_OUT.resolve():
            print(f"gpu.py: a dry run never writes {DEFAULT_OUT.relative_to(ROOT)}; choose another --out",
                  file=sys.stderr)
            return 2
    else:
        out = args.out or DEFAULT_OUT
    device = torch.device("cpu" if args.dry_run else "cuda")
    dev = "cpu" if args.dry_run else "cuda"
    repeats = args.repeats or (3 if args.dry_run else 30)
    opts = dict(repeats=repeats, warmup=1 if args.dry_run else 5, block_s=0.0 if args.dry_run else 0.005)
    skip = {s for s in SECTIONS if getattr(args, f"skip_{s}")}

    rec = Record(out, {
        "benchmark": "gpu-check: GPU tests, experiments (smoke profiles and timed cuts of the paper profiles) "
                     "and float64 timings on a CUDA device",
        "dry_run": args.dry_run, "device": dev, "gpu": gpu_info(), "complete": False,
        "experiments": names, "skipped_sections": sorted(skip, key=SECTIONS.index), "sections_done": [],
        "started_utc": now_utc(), "finished_utc": None, "total_wall_s": None,
        **run_info(), "load_average_1_5_15": list(os.getloadavg()),
        "tests": None, "timings": None,
        "smoke": {"runs": []},
        "paper": {"estimate_label": ESTIMATE_LABEL,
                  "estimate": "full_estimate_s = duration_s x work_units.scale; scale = the largest ratio (full / "
                              "cut) over the kinds of work in work_units, so that each kind, and the setup counted "
                              "once in the cut, is scaled by at least its own growth",
                  "runs": []}})
    if args.dry_run:
        rec.data["paper"]["dry_run_note"] = ("dry run: each cut is checked against its notebook's parameters "
                                             "with pstn.runner.resolve_parameters and its work units counted, "
                                             "but it is not run (status 'validated', no estimate)")
    rec.save()
    rec.log(f"{'DRY RUN on the CPU' if args.dry_run else rec.data['gpu']['name']}; writing {out}")

    def terminated(signum, frame):                                # e.g. a time limit: keep what is done
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, terminated)
    tmp_results = None
    if args.results is None:
        tmp_results = Path(tempfile.mkdtemp(prefix="pstn-gpu-check-"))
    results = args.results or tmp_results
    rec.data["results_dir"] = str(results)
    try:
        if "tests" not in skip:
            rec.log("tests: pytest -m gpu tests/test_gpu.py ...")
            rec.data["tests"] = t = run_tests(timeout_s=60 if args.dry_run else 300)
            rec.data["sections_done"].append("tests"); rec.save()
            rec.log(f"tests: {t.get('passed')} passed, {t.get('failed')} failed, {t.get('errors')} errors, "
                    f"{t.get('skipped')} skipped in {t['duration_s']} s"
                    + "".join(f"\n    FAILED {f['id']}: {f['message'][:200]}" for f in t.get("failing", [])))
        if "timings" not in skip:
            rec.data["timings"] = run_timings(device, opts, DRY_SHAPES if args.dry_run else SHAPES, rec)
            rec.data["sections_done"].append("timings"); rec.save()
        if "smoke" not in skip:
            run_smoke(names, dev, results / "smoke", rec)
            rec.data["sections_done"].append("smoke"); rec.save()
        if "paper" not in skip:
            run_paper(names, dev, results / "paper", rec, args.dry_run)
            rec.data["sections_done"].append("paper"); rec.save()
    finally:
        for r in rec.data["smoke"]["runs"] + rec.data["paper"]["runs"]:
            if r.get("status") == "running": r["status"] = "interrupted"
        rec.save()
        if tmp_results is not None: shutil.rmtree(tmp_results, ignore_errors=True)

    t = rec.data["tests"] or {}
    runs = rec.data["smoke"]["runs"] + rec.data["paper"]["runs"]
    bad_runs = [f"{r['experiment']} ({r['profile']}): {r['status']}" for r in runs
                if r.get("status") not in ("finished", "validated" if args.dry_run else "finished")]
    bad_timings = [k for k, v in (rec.data["timings"] or {}).items() if isinstance(v, dict) and "error" in v]
    tests_ok = not t or (t.get("returncode") == 0 and not t.get("failed") and not t.get("errors"))
    rec.data["complete"] = True
    rec.data["ok"] = ok = tests_ok and not bad_runs and not bad_timings
    rec.save()
    rec.log(f"{'all good' if ok else 'PROBLEMS'}: tests {'ok' if tests_ok else 'FAILED'}"
            + (f"; runs not finished: {', '.join(bad_runs)}" if bad_runs else "")
            + (f"; timings with errors: {', '.join(bad_timings)}" if bad_timings else "")
            + f"; written to {os.path.relpath(out)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
