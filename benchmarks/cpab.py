"""Compare the book's CPAB transformations with the public libraries that implement CPAB (the "anchors").

Run from the repository root:

    bash benchmarks/install_anchors.sh          # once: libcpab and difw into _anchors/, outside .venv
    .venv/bin/python benchmarks/cpab.py

This script installs nothing. If the folder _anchors/ exists it is put on sys.path for this run only (pstn never
imports either library), and the script says which anchors it found; without them it still times the book's code
and reports the anchors as "not present". Everything runs on the CPU with torch's default number of threads.

- 1-D: `pstn.cpab.CPAB1D(100)` against difw (closed-form integration in C++, compiled when difw is imported).
  difw compiles with -Ofast -ffast-math, which breaks its infinity tests; the script therefore also compiles
  difw's unchanged C++ sources with -O3, checks every variant (its own build, the -O3 rebuild, its pure-PyTorch
  path) against a float64 reference, and times the first correct one of: its own build, the -O3 rebuild, its
  pure-PyTorch path. The JSON says which variant was timed and whether its own build was wrong here.
- 2-D: `pstn.cpab2d.CPAB2D((4, 4))` against libcpab on the tessellation [4, 4] (each square split through its
  centre into 4 triangles). libcpab's wheel has no C++ sources, so it runs its pure-PyTorch path (50 fixed steps
  of per-cell matrix exponentials).

Agreement: the bases of the three libraries differ, so the same velocity field is carried over through the field
itself. The velocity is linear in theta: evaluate each library's velocity for every basis vector at many random
points, and solve by least squares for the linear map M with v_anchor(M theta) = v_ours(theta). The fit's residual
is reported (it is ~0 when both spaces are the same). Then, for thetas drawn from our prior, the transformed points
of ours and of the anchor (at theta_anchor = M theta) are compared with each other and with a float64 reference:
classical RK4 with many steps on our velocity field (its own error is estimated by halving the step). Gradients
are compared too: by the chain rule, dL/dtheta_ours = dL/dtheta_anchor @ M.

Speed: batch 64, float32 inputs for every library, median of repeated runs after a warm-up; each repeat runs ours
and the anchor back to back, and the repeats go on until the spread (interquartile range / median) of each timing
is at most --spread (5%), or --max-repeats / --max-seconds are reached; the record says which. On a machine with
CUDA, ours is also timed on the GPU (synchronised after every call). "forward" is a transform without autograd; "forward+backward" is a transform with
theta requiring gradients followed by the backward of the sum of the outputs. "speedup" is anchor / ours.

It prints a table and writes its record into results/benchmarks/cpab.json (or --out) under this machine's name
(CPU model and core count, and GPU), keeping the records of other machines. The timings depend on the machine and
on what else it is running (the load average is recorded).
"""
import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from common import cuda_synced, machine_key, run_info, save_for_machine, stable_times

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT / "_anchors"
BATCH = 64
NC_1D, N_1D = 100, 1000
TESS_2D = (4, 4)
SIZES_2D = [28, 64]
PRIOR = dict(length_scale=0.1, output_variance=1.0)                 # the prior used to draw every theta
GOAL_2D_SPEEDUP, GOAL_1D_SPEEDUP, GOAL_ACCURACY = 5.0, 1.0, 1e-5
DIFW_CORRECT = 1e-3          # a difw variant counts as correct when its max abs error is below this (float32 code)


# ----------------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def output_to(log: Path):
    "Send everything written to file descriptors 1 and 2 (including compiler subprocesses) to `log`."
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as f:
        os.dup2(f.fileno(), 1); os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
            os.close(saved[0]); os.close(saved[1])


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def fwd(fn, theta):
    def run():
        with torch.no_grad(): fn(theta)
    return run


def fwd_bwd(fn, theta):
    th = theta.detach().clone().requires_grad_()
    def run():
        th.grad = None
        fn(th).sum().backward()
    return run


def rk4(vel, p, steps: int):
    "Classical RK4 for time 1 with `steps` equal steps on the velocity field `vel(p)` (float64 reference)."
    h = 1.0 / steps
    for _ in range(steps):
        k1 = vel(p); k2 = vel(p + h / 2 * k1); k3 = vel(p + h / 2 * k2); k4 = vel(p + h * k3)
        p = p + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return p


def reference(vel, p, steps: int):
    "RK4 with `steps` and with `steps // 2` steps: the finer result and the difference (its own error estimate)."
    fine, coarse = rk4(vel, p, steps), rk4(vel, p, steps // 2)
    return fine, (fine - coarse).abs().max().item()


def fit_map(V_anchor, V_ours):
    """Least-squares map M (d_anchor, D) with V_anchor @ M = V_ours: columns are velocities (stacked over points
    and components) of each basis vector. Returns M and the relative residual max|V_a M - V_o| / max|V_o|."""
    M = torch.linalg.lstsq(V_anchor, V_ours).solution
    res = ((V_anchor @ M - V_ours).abs().max() / V_ours.abs().max()).item()
    return M, res


def rel(a, b) -> float:
    "max|a - b| / max|b|."
    return ((a - b).abs().max() / b.abs().max()).item()


def maxabs(a, b) -> float:
    return (a.double() - b.double()).abs().max().item()


# ----------------------------------------------------------------------------------------------------- anchors
def find_anchors(build_log: Path) -> dict:
    """Import the anchors found in _anchors/ (nothing is installed). Returns {name: info}; each info has
    "found" and, when found, "module", "version" and notes. difw's C++ is compiled here when its cache is cold."""
    info = {"libcpab": {"found": False, "status": "not present"}, "difw": {"found": False, "status": "not present"}}
    if not ANCHORS.is_dir():
        for v in info.values(): v["status"] = "not present (no _anchors/: run bash benchmarks/install_anchors.sh)"
        return info
    sys.path.insert(0, str(ANCHORS))
    if (ANCHORS / "bin").is_dir():                                   # the ninja wheel, when the system has none
        os.environ["PATH"] = str(ANCHORS / "bin") + os.pathsep + os.environ.get("PATH", "")
    ext_root = ANCHORS / "torch_extensions"

    # libcpab first: its import tries to JIT-compile C++ sources that its wheel lacks, and falls back.
    try:
        os.environ["TORCH_EXTENSIONS_DIR"] = str(ext_root / "libcpab")
        with output_to(build_log):
            libcpab = importlib.import_module("libcpab")
            lt = importlib.import_module("libcpab.transformer")
        fast = bool(getattr(lt, "_cpu_succes", False))
        info["libcpab"] = {
            "found": True, "module": libcpab, "version": version_of("libcpab"), "path": str(Path(libcpab.__file__).parent),
            "variant": "compiled C++ path" if fast else "pure-PyTorch path (its wheel has no C++ sources)",
            "status": "found"}
    except Exception as e:                                           # present but broken: say so, go on
        if (ANCHORS / "libcpab").is_dir():
            info["libcpab"] = {"found": False, "status": f"present but failed to import: {e!r}"}

    try:
        os.environ["TORCH_EXTENSIONS_DIR"] = str(ext_root / "difw")
        t0 = time.perf_counter()
        with output_to(build_log):
            difw = importlib.import_module("difw")
            dt = importlib.import_module("difw.backend.pytorch.transformer")
        d = {"found": True, "module": difw, "transformer": dt, "version": version_of("difw"),
             "path": str(Path(difw.__file__).parent), "status": "found", "import_s": time.perf_counter() - t0,
             "builds": {}}
        if dt._cpu_success:
            d["builds"]["own build (-Ofast -ffast-math)"] = dt.cpab_cpu
        from torch.utils.cpp_extension import load
        src = Path(dt.__file__).parent
        try:
            t0 = time.perf_counter()
            with output_to(build_log):
                o3 = load(name="difw_cpab_cpu_O3", sources=[str(src / "transformer.cpp"),
                          str(src / ".." / ".." / "core" / "cpab_ops.cpp")], extra_cflags=["-O3"], verbose=True)
            d["builds"]["-O3 rebuild"] = o3
            d["o3_build_s"] = time.perf_counter() - t0
        except Exception as e:
            d["o3_error"] = repr(e)
        info["difw"] = d
    except Exception as e:
        if (ANCHORS / "difw").is_dir():
            info["difw"] = {"found": False, "status": f"present but failed to import: {e!r}"}
    return info


def public(info: dict) -> dict:
    "The JSON-safe part of an anchor's info."
    return {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))
            and k not in ("builds",)}


# ---------------------------------------------------------------------------------------------------------- 1-D
def run_1d(info, args, gen):
    out = {"name": f"1-D, {NC_1D} cells, {N_1D} points, batch {BATCH}", "dim": 1, "nc": NC_1D, "points": N_1D,
           "batch": BATCH, "zero_boundary": True, "anchor": "difw", "dtype_timed": "float32"}
    try:
        from pstn.cpab import CPAB1D
        ours = CPAB1D(NC_1D, zero_boundary=True)
        out["ours"] = f"pstn.cpab.CPAB1D({NC_1D}), dim {ours.dim}"
    except Exception as e:
        ours = None
        out["ours"] = f"pstn.cpab not available ({e!r})"
    dw = info["difw"]
    if not dw["found"]:
        out["anchor_status"] = dw["status"]
    x = torch.linspace(0, 1, N_1D, dtype=torch.float64)

    # ---- agreement
    agree = {}
    M = None
    if ours is not None:
        theta = ours.sample_prior(args.agree_batch, generator=gen, **PRIOR)                 # float64 (b, D)
        vel = lambda p: ours.velocity(p, theta)
        ref, ref_self = reference(vel, x.expand(len(theta), -1).clone(), args.ref_steps)
        y_ours = ours.transform(x, theta)
        agree.update(thetas=len(theta), points=N_1D, theta_source="our prior",
                     reference=f"RK4, {args.ref_steps} steps, float64, on our field",
                     reference_self_error=ref_self, ours_max_abs_error=maxabs(y_ours, ref),
                     ours_accuracy_goal_met=bool(maxabs(y_ours, ref) <= GOAL_ACCURACY),
                     mean_abs_displacement=(ref - x).abs().mean().item())
    if ours is not None and dw["found"]:
        difw, dt = dw["module"], dw["transformer"]
        T = difw.Cpab(NC_1D, backend="pytorch", device="cpu", zero_boundary=True)
        out["anchor_settings"] = {"class": f"difw.Cpab({NC_1D}, backend='pytorch', zero_boundary=True, basis='rref')",
                                  "dim": int(T.params.d), "method": "closed_form", "dtype": "float32 (only)"}
        # the map between the bases, through the velocity: difw's pure-PyTorch velocity, independent of its C++
        xf = torch.rand(args.fit_points, generator=gen, dtype=torch.float64)
        T.params.use_slow = True
        Va = T.calc_velocity(xf.float(), torch.eye(T.params.d)).double().T                # (P, d_anchor)
        Vo = ours.velocity(xf, torch.eye(ours.dim, dtype=torch.float64)).T                 # (P, D)
        M, fit_res = fit_map(Va, Vo)
        xc = torch.rand(args.fit_points, generator=gen, dtype=torch.float64)
        theta_a = (theta @ M.T).float()
        chk = rel(T.calc_velocity(xc.float(), theta_a).double(), ours.velocity(xc, theta))
        agree.update(fit_points=args.fit_points, fit_relative_residual_basis=fit_res, fit_relative_residual_field=chk)
        # each variant of difw against the reference and against ours
        w = torch.randn(theta.shape[0], N_1D, generator=gen, dtype=torch.float64)       # a generic loss
        th = theta.clone().requires_grad_()
        (ours.transform(x, th) * w).sum().backward()
        g_ours = th.grad
        variants = {}
        builds = dict(dw["builds"])
        builds["pure-PyTorch path"] = None
        for name, mod in builds.items():
            T.params.use_slow = mod is None
            if mod is not None: dt.cpab_cpu = mod
            try:
                y_a = T.transform_grid(x.float(), theta_a).double()
                v = {"max_abs_error": maxabs(y_a, ref), "max_abs_diff_ours": maxabs(y_a, y_ours)}
                if mod is not None:                   # difw's pure-PyTorch backward fails on a shared grid
                    tha = theta_a.clone().requires_grad_()
                    (T.transform_grid(x.float(), tha) * w.float()).sum().backward()
                    v["gradient_relative_diff_ours"] = rel(tha.grad.double() @ M, g_ours)
            except Exception as e:
                v = {"error": repr(e)}
            variants[name] = v
        agree["difw_variants"] = variants
        tol = DIFW_CORRECT
        own = variants.get("own build (-Ofast -ffast-math)")
        agree["own_build_correct"] = None if own is None else bool(own.get("max_abs_error", float("inf")) <= tol)
        chosen = next((n for n in builds if variants[n].get("max_abs_error", float("inf")) <= tol), None)
        out["anchor_variant"] = chosen
        agree["correct_if_max_abs_error_below"] = tol
        if chosen is not None:
            va = variants[chosen]
            agree.update(anchor_variant=chosen, anchor_max_abs_error=va["max_abs_error"],
                         max_abs_diff_ours_anchor=va["max_abs_diff_ours"],
                         gradient_relative_diff_ours_anchor=va.get("gradient_relative_diff_ours"),
                         within_anchor_accuracy=bool(va["max_abs_diff_ours"] <= va["max_abs_error"]
                                                     + agree["ours_max_abs_error"]),
                         ours_at_least_as_accurate=bool(agree["ours_max_abs_error"] <= va["max_abs_error"]))
        T.params.use_slow = out["anchor_variant"] == "pure-PyTorch path"
        if out["anchor_variant"] in dw["builds"]: dt.cpab_cpu = dw["builds"][out["anchor_variant"]]
    out["agreement"] = agree

    # ---- speed
    theta = (ours.sample_prior(BATCH, generator=gen, **PRIOR) if ours is not None
             else torch.randn(BATCH, NC_1D - 1, generator=gen, dtype=torch.float64))
    x32, th32 = x.float(), theta.float()
    f_ours = (lambda th: ours.transform(x32, th)) if ours is not None else None
    f_anch = None
    if M is not None and out.get("anchor_variant"):
        f_anch = lambda th: T.transform_grid(x32, th)
        th_a32 = (theta @ M.T).float()
    elif dw["found"] and ours is None:
        T = dw["module"].Cpab(NC_1D, backend="pytorch", device="cpu", zero_boundary=True)
        f_anch, th_a32 = (lambda th: T.transform_grid(x32, th)), torch.randn(BATCH, T.params.d, generator=gen) * 0.5
        out["anchor_variant"] = "own build, unchecked (pstn.cpab not available)"
    timing(out, f_ours, f_anch, th32, th_a32 if f_anch else None, limits(args))
    timing_cuda(out, f_ours, th32, limits(args))
    if out["speedup_forward_backward"] is not None:
        out["goal"] = f"forward at least as fast as difw's C++ (speedup >= {GOAL_1D_SPEEDUP:g})"
        out["goal_met"] = bool(out["speedup_forward"] >= GOAL_1D_SPEEDUP)
    return out


def limits(args) -> dict:
    return dict(target=args.spread, max_repeats=args.max_repeats, max_seconds=args.max_seconds, warmup=2)


def timing(out, f_ours, f_anch, th, th_a, limits, extra=None):
    """Forward and forward+backward times of ours and the anchor on the CPU, back to back until their spread is
    small (`stable_times`). `extra`: more variants of ours (name -> function of theta), timed in the same rounds;
    their times and speedups go under `variants`."""
    extra = extra or {}
    f, f_ok = stable_times({"ours": f_ours and fwd(f_ours, th), "anchor": f_anch and fwd(f_anch, th_a),
                            **{k: fwd(g, th) for k, g in extra.items()}}, **limits)
    b, b_ok = stable_times({"ours": f_ours and fwd_bwd(f_ours, th), "anchor": f_anch and fwd_bwd(f_anch, th_a),
                            **{k: fwd_bwd(g, th) for k, g in extra.items()}}, **limits)
    pick = lambda r, k: {"ours": r[k], "anchor": r["anchor"]}
    out.update(summarise(pick(f, "ours"), pick(b, "ours"), f_ok and b_ok))
    if extra:
        out["variants"] = {k: summarise(pick(f, k), pick(b, k), f_ok and b_ok) for k in extra}


def summarise(f, b, ok):
    ms = lambda r: {k: None if v is None else v["median_ms"] for k, v in r.items()}
    fo, fa = ms(f)["ours"], ms(f)["anchor"]
    bo, ba = ms(b)["ours"], ms(b)["anchor"]
    both = lambda a, c: a is not None and c is not None
    return dict(forward_ms=ms(f), forward_backward_ms=ms(b),
                spread={"forward": {k: v and v["spread"] for k, v in f.items()},
                        "forward_backward": {k: v and v["spread"] for k, v in b.items()}},
                repeats={"forward": max((v["repeats"] for v in f.values() if v), default=0),
                         "forward_backward": max((v["repeats"] for v in b.values() if v), default=0)},
                spread_target_reached=ok,
                speedup_forward=fa / fo if both(fo, fa) else None,
                speedup_forward_backward=ba / bo if both(bo, ba) else None,
                ours_over_anchor_forward=fo / fa if both(fo, fa) else None,
                ours_over_anchor_forward_backward=bo / ba if both(bo, ba) else None)


def timing_cuda(out, f_ours, th, limits):
    "Ours on the GPU (float32, synchronised after every call); no anchor is timed there."
    if f_ours is None or not torch.cuda.is_available(): return
    thc = th.cuda()
    f, f_ok = stable_times({"ours": cuda_synced(fwd(f_ours, thc)), "anchor": None}, **limits)
    b, b_ok = stable_times({"ours": cuda_synced(fwd_bwd(f_ours, thc)), "anchor": None}, **limits)
    out["cuda"] = summarise(f, b, f_ok and b_ok)
    out["cuda"]["device"] = torch.cuda.get_device_name(0)


def grid_points(n: int) -> torch.Tensor:
    "n x n points of [0, 1]^2 (borders included), (n*n, 2) in (x, y) order, x fastest; float64."
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def run_2d(info, args, gen):
    cases, agree = [], {}
    try:
        from pstn.cpab2d import CPAB2D
        ours = CPAB2D(tess=TESS_2D, zero_boundary=True)
        ours_desc = f"pstn.cpab2d.CPAB2D(tess={TESS_2D}), dim {ours.dim}"
    except Exception as e:
        ours, ours_desc = None, f"pstn.cpab2d not available ({type(e).__name__}: {e})"
    lc = info["libcpab"]
    T = M = None
    if lc["found"]:
        T = lc["module"].Cpab(list(TESS_2D), device="cpu", zero_boundary=True, volume_perservation=False)
        anchor_settings = {"class": f"libcpab.Cpab({list(TESS_2D)}, zero_boundary=True, volume_perservation=False)",
                           "dim": int(T.params.d), "nstepsolver": T.params.nstepsolver, "variant": lc["variant"],
                           "dtype": "float32 (its pure-PyTorch path casts the basis to float32)",
                           "domain": [T.params.domain_min, T.params.domain_max]}
    else:
        anchor_settings = None

    def draw(n):
        if ours is None: return None
        if hasattr(ours, "sample_prior"):
            return ours.sample_prior(n, generator=gen, **PRIOR).double()
        return torch.randn(n, ours.dim, generator=gen, dtype=torch.float64)          # no prior: standard normal

    if ours is not None:
        theta = draw(args.agree_batch)
        p = grid_points(28)
        vel = lambda q: ours.velocity(q, theta).double()
        ref, ref_self = reference(vel, p.expand(len(theta), -1, -1).clone(), args.ref_steps)
        y_ours = ours.transform(p, theta).double()
        agree.update(thetas=len(theta), points="28 x 28 grid of [0, 1]^2, borders included",
                     theta_source="our prior" if hasattr(ours, "sample_prior") else "standard normal",
                     reference=f"RK4, {args.ref_steps} steps, float64, on our field", reference_self_error=ref_self,
                     ours_max_abs_error=maxabs(y_ours, ref),
                     ours_accuracy_goal_met=bool(maxabs(y_ours, ref) <= GOAL_ACCURACY),
                     mean_abs_displacement=(ref - p).norm(dim=-1).mean().item())
        # three times the prior's scale (where training goes), and 10 fixed steps (steps_per_rate=0)
        fixed = CPAB2D(tess=TESS_2D, zero_boundary=True, steps_per_rate=0)
        th3 = 3 * theta
        ref3, ref3_self = reference(lambda q: ours.velocity(q, th3).double(),
                                    p.expand(len(theta), -1, -1).clone(), args.ref_steps)
        agree.update(reference_self_error_3x=ref3_self,
                     ours_max_abs_error_3x_prior=maxabs(ours.transform(p, th3).double(), ref3),
                     fixed_steps_max_abs_error=maxabs(fixed.transform(p, theta).double(), ref),
                     fixed_steps_max_abs_error_3x_prior=maxabs(fixed.transform(p, th3).double(), ref3))
        agree["ours_accuracy_goal_met_3x"] = bool(agree["ours_max_abs_error_3x_prior"] <= GOAL_ACCURACY)
    if ours is not None and T is not None:
        pf = torch.rand(args.fit_points, 2, generator=gen, dtype=torch.float64)
        Va = torch.stack([T.calc_vectorfield(pf.T.contiguous(), e[None]).double().T.reshape(-1)    # (P*2,) each
                          for e in torch.eye(T.params.d, dtype=torch.float64)], dim=1)
        Vo = ours.velocity(pf, torch.eye(ours.dim, dtype=torch.float64)).double()              # (D, P, 2)
        Vo = Vo.reshape(ours.dim, -1).T
        M, fit_res = fit_map(Va, Vo)
        pc = torch.rand(args.fit_points, 2, generator=gen, dtype=torch.float64)
        theta_a = (theta @ M.T).float()
        va = torch.stack([T.calc_vectorfield(pc.T.contiguous(), t[None].double()).double().T for t in theta_a])
        chk = rel(va, ours.velocity(pc, theta).double())
        y_a = T.transform_grid(p.T.float().contiguous(), theta_a).permute(0, 2, 1).double()
        T.set_solver_params(nstepsolver=args.libcpab_fine_steps)
        y_fine = T.transform_grid(p.T.float().contiguous(), theta_a).permute(0, 2, 1).double()
        T.set_solver_params(nstepsolver=50)
        w = torch.randn(len(theta), p.shape[0], 2, generator=gen, dtype=torch.float64)
        th = theta.clone().requires_grad_()
        (ours.transform(p, th) * w).sum().backward()
        tha = theta_a.clone().requires_grad_()
        (T.transform_grid(p.T.float().contiguous(), tha).permute(0, 2, 1) * w.float()).sum().backward()
        a_err, d_oa = maxabs(y_a, ref), maxabs(y_a, y_ours)
        agree.update(fit_points=args.fit_points, fit_relative_residual_basis=fit_res, fit_relative_residual_field=chk,
                     anchor_variant=f"{lc['variant']}, nstepsolver 50 (its default)",
                     anchor_max_abs_error=a_err, max_abs_diff_ours_anchor=d_oa,
                     anchor_fine_steps=args.libcpab_fine_steps,
                     anchor_fine_max_abs_error=maxabs(y_fine, ref), max_abs_diff_ours_anchor_fine=maxabs(y_fine, y_ours),
                     gradient_relative_diff_ours_anchor=rel(tha.grad.double() @ M, th.grad),
                     within_anchor_accuracy=bool(d_oa <= a_err + agree["ours_max_abs_error"]),
                     ours_at_least_as_accurate=bool(agree["ours_max_abs_error"] <= a_err))

    theta = draw(BATCH)
    for n in SIZES_2D:
        out = {"name": f"2-D, tess {list(TESS_2D)}, {n}x{n} points, batch {BATCH}", "dim": 2, "tess": list(TESS_2D),
               "points": n * n, "grid": f"{n}x{n}", "batch": BATCH, "zero_boundary": True, "anchor": "libcpab",
               "dtype_timed": "float32", "ours": ours_desc}
        if anchor_settings: out["anchor_settings"] = anchor_settings
        else: out["anchor_status"] = lc["status"]
        p = grid_points(n)
        p32, pa32 = p.float(), p.T.float().contiguous()
        f_ours = (lambda th, p32=p32: ours.transform(p32, th)) if ours is not None else None
        f_anch = (lambda th, pa32=pa32: T.transform_grid(pa32, th)) if T is not None else None
        if M is not None:
            th32, th_a32 = theta.float(), (theta @ M.T).float()
        else:
            th32 = None if ours is None else theta.float()
            th_a32 = None if T is None else 0.5 * torch.randn(BATCH, T.params.d, generator=gen)
        if f_anch is not None: out["anchor_variant"] = lc["variant"] + ", nstepsolver 50"
        fixed = CPAB2D(tess=TESS_2D, zero_boundary=True, steps_per_rate=0) if ours is not None else None
        extra = {"fixed_10_steps": lambda th, p32=p32: fixed.transform(p32, th)} if fixed is not None else None
        timing(out, f_ours, f_anch, th32, th_a32, limits(args), extra)
        timing_cuda(out, f_ours, th32, limits(args))
        if out["speedup_forward_backward"] is not None:
            out["goal"] = f"forward+backward at least {GOAL_2D_SPEEDUP:g}x faster than libcpab"
            out["goal_met"] = bool(out["speedup_forward_backward"] >= GOAL_2D_SPEEDUP)
        cases.append(out)
    cases[0]["agreement"] = agree
    return cases


# --------------------------------------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spread", type=float, default=0.05,
                   help="repeat each timing until its spread (IQR / median) is at most this (default 0.05)")
    p.add_argument("--max-repeats", type=int, default=200, help="at most this many repeats per timing")
    p.add_argument("--max-seconds", type=float, default=60.0, help="at most this long per timing (default 60)")
    p.add_argument("--agree-batch", type=int, default=8, help="thetas in the agreement check (default 8)")
    p.add_argument("--fit-points", type=int, default=4000, help="random points for the basis fit (default 4000)")
    p.add_argument("--ref-steps", type=int, default=4000, help="RK4 steps of the reference (default 4000)")
    p.add_argument("--libcpab-fine-steps", type=int, default=1000,
                   help="libcpab's nstepsolver for its converged run in the agreement check (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["1d", "2d"], help="run one part only")
    p.add_argument("--build-anchors", action="store_true",
                   help="only import the anchors (compiling difw's C++ into _anchors/torch_extensions) and exit")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "cpab.json")
    args = p.parse_args(argv)

    build_log = Path(tempfile.gettempdir()) / "pstn_cpab_anchor_build.log"
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    info = find_anchors(build_log)
    for name, v in info.items():
        extra = f" {v['version']} at {v['path']}: {v.get('variant', '')}" if v["found"] else ""
        print(f"anchor {name}: {v['status']}{extra}")
    if info["difw"]["found"]:
        d = info["difw"]
        print(f"  difw builds: {', '.join(d['builds']) or 'none'}"
              + (f"; -O3 rebuild failed: {d['o3_error']}" if "o3_error" in d else "")
              + f" (compiler output in {build_log})")
    print(f"anchors loaded in {time.perf_counter() - t0:.1f} s")
    if args.build_anchors:
        return

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cases = []
    if args.only in (None, "1d"):
        try:
            cases.append(run_1d(info, args, gen))
        except Exception:
            traceback.print_exc()
            cases.append({"name": "1-D", "error": traceback.format_exc(limit=3)})
    if args.only in (None, "2d"):
        try:
            cases.extend(run_2d(info, args, gen))
        except Exception:
            traceback.print_exc()
            cases.append({"name": "2-D", "error": traceback.format_exc(limit=3)})

    anchors = {k: public(v) for k, v in info.items()}
    if info["difw"]["found"]:
        anchors["difw"]["builds"] = list(info["difw"]["builds"])
        one = next((c for c in cases if c.get("dim") == 1), {})
        ag = one.get("agreement", {})
        anchors["difw"]["own_build_correct_here"] = ag.get("own_build_correct")
        anchors["difw"]["variant_timed"] = one.get("anchor_variant")
    record = {
        "benchmark": "CPAB: pstn.cpab (1-D) and pstn.cpab2d (2-D) against difw and libcpab",
        "settings": {"devices": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
                     "dtype_timed": "float32", "batch": BATCH, "statistic": "median", "warmup": 2,
                     "spread": "interquartile range / median", "spread_target": args.spread,
                     "max_repeats": args.max_repeats, "max_seconds": args.max_seconds,
                     "forward": "transform without autograd",
                     "forward_backward": "transform with theta requiring grad, then backward of the sum of outputs",
                     "speedup": "anchor ms / ours ms", "prior": PRIOR, "seed": args.seed},
        "goals": {"2d": f"forward+backward speedup over libcpab >= {GOAL_2D_SPEEDUP:g}",
                  "1d": "forward no slower than difw's C++ (speedup >= 1)",
                  "accuracy": f"ours max abs error against the float64 reference <= {GOAL_ACCURACY:g}"},
        "anchors": anchors,
        "cases": cases,
        **run_info(), "load_average_1_5_15_at_start": load_start,
        "load_average_1_5_15": list(os.getloadavg()), "run_s": time.perf_counter() - t0,
    }
    save_for_machine(args.out, record)

    print(f"\ntorch {record['torch']}, {record['num_threads']} threads, {record['cpu_model']}, "
          f"load {load_start[0]:.2f} at start, {record['load_average_1_5_15'][0]:.2f} at end "
          "(1-minute averages; above the core count, other work competed for the CPU)")
    fmt = lambda v, w=8: f"{v:>{w}.1f}" if isinstance(v, float) else f"{'-':>{w}}"
    fx = lambda v: f"{v:>7.2f}x" if isinstance(v, float) else f"{'-':>8}"
    head = (f"{'case':<40} {'anchor':<8} {'fwd ours':>8} {'fwd anc':>8} {'speedup':>8} "
            f"{'f+b ours':>8} {'f+b anc':>8} {'speedup':>8}  goal")
    print(head); print("-" * len(head))
    for c in cases:
        if "error" in c:
            print(f"{c['name']:<40} failed: see the traceback above"); continue
        f, b = c["forward_ms"], c["forward_backward_ms"]
        goal = ("met" if c["goal_met"] else "NOT met") if "goal_met" in c else "-"
        print(f"{c['name']:<40} {c['anchor']:<8} {fmt(f['ours'])} {fmt(f['anchor'])} {fx(c['speedup_forward'])} "
              f"{fmt(b['ours'])} {fmt(b['anchor'])} {fx(c['speedup_forward_backward'])}  {goal}")
    print("times in ms, median; speedup = anchor / ours; spread (IQR / median) of every timing: "
          + ", ".join(f"{c['name'].split(',')[0]} {c['grid'] if 'grid' in c else ''} <= "
                      f"{max(x for v in c['spread'].values() for x in v.values() if x is not None):.1%}"
                      for c in cases if "spread" in c))
    for c in cases:
        for k, v in c.get("variants", {}).items():
            print(f"  {c['name']}, ours with {k.replace('_', ' ')}: forward {v['forward_ms']['ours']:.1f} ms "
                  f"({v['speedup_forward'] or 0:.2f}x), forward+backward {v['forward_backward_ms']['ours']:.1f} ms "
                  f"({v['speedup_forward_backward'] or 0:.2f}x)")
        if "cuda" in c:
            g = c["cuda"]
            print(f"  {c['name']} on {g['device']}: forward {g['forward_ms']['ours']:.2f} ms, forward+backward "
                  f"{g['forward_backward_ms']['ours']:.2f} ms")
    for c in cases:
        if c.get("anchor_variant"): print(f"  {c['name']}: {c['anchor']} = {c['anchor_variant']}")
        if "anchor_status" in c: print(f"  {c['name']}: {c['anchor']} {c['anchor_status']}")
        if "ours" in c and "not available" in c["ours"]: print(f"  {c['name']}: {c['ours']}")
    print("\nagreement (max abs differences of transformed points, domain [0, 1]):")
    for c in cases:
        a = c.get("agreement")
        if not a: continue
        if "ours_max_abs_error_3x_prior" in a:
            print(f"  2-D at three times the prior's scale: ours error {a['ours_max_abs_error_3x_prior']:.1e}; with 10 "
                  f"fixed steps {a['fixed_steps_max_abs_error']:.1e} (prior), "
                  f"{a['fixed_steps_max_abs_error_3x_prior']:.1e} (3x)")
        print(f"  {c['name'].split(',')[0]}: reference self-error {a['reference_self_error']:.1e}, "
              f"ours error {a['ours_max_abs_error']:.1e} (goal <= {GOAL_ACCURACY:g}: "
              f"{'met' if a['ours_accuracy_goal_met'] else 'NOT met'}), mean displacement {a['mean_abs_displacement']:.3f}")
        if "max_abs_diff_ours_anchor" in a:
            print(f"    basis fit residual {a['fit_relative_residual_basis']:.1e} (field {a['fit_relative_residual_field']:.1e}); "
                  f"{a['anchor_variant']}: error {a['anchor_max_abs_error']:.1e}, "
                  f"|ours - anchor| {a['max_abs_diff_ours_anchor']:.1e}, gradient rel. diff "
                  f"{a['gradient_relative_diff_ours_anchor']:.1e}")
        if "anchor_fine_max_abs_error" in a:
            print(f"    libcpab with {a['anchor_fine_steps']} steps: error {a['anchor_fine_max_abs_error']:.1e}, "
                  f"|ours - anchor| {a['max_abs_diff_ours_anchor_fine']:.1e}")
        for name, v in a.get("difw_variants", {}).items():
            print(f"    difw {name}: " + ", ".join(f"{k} {val:.1e}" if isinstance(val, float) else f"{k} {val}"
                                                  for k, val in v.items()))
        if "own_build_correct" in a and a["own_build_correct"] is not None:
            print(f"    difw's own build correct here: {a['own_build_correct']}")
    print(f"written to {os.path.relpath(args.out)} as {machine_key(record)!r}")


if __name__ == "__main__":
    main()
