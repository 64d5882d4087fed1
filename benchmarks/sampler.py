"""Time the book's sampler against PyTorch's fused one, on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/sampler.py

It times the forward pass and the forward plus backward pass of `pstn.sampling.sample` (the sampler derived in
nbs/02_sampling.ipynb, with its hand-written backward) and of `torch.nn.functional.grid_sample`: bilinear, zero
padding, align_corners=False, on random near-identity affine grids, at batch shapes (64, 1, 28, 28) and
(64, 3, 96, 96). For forward plus backward, both the input and the grid require gradients. Each repeat runs ours
and the reference back to back, after a warm-up, and the medians are reported with their ratio (ours / reference).
It prints a table and writes results/benchmarks/sampler.json (or --out). This is a measurement, not a test: the
numbers depend on the machine and on whatever else it is running (the load average is recorded).
"""
import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import run_info
from pstn.sampling import sample

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(64, 1, 28, 28), (64, 3, 96, 96)]


def make_case(shape, seed=0):
    "Random input and a random near-identity affine grid (target -> source), float32."
    g = torch.Generator().manual_seed(seed)
    B = shape[0]
    x = torch.randn(shape, generator=g)
    theta = torch.eye(2, 3).repeat(B, 1, 1) + 0.1 * torch.randn(B, 2, 3, generator=g)
    grid = F.affine_grid(theta, shape, align_corners=False)
    return x, grid, torch.randn(shape, generator=g)               # output gradient: same shape as the input here


def fwd(fn, x, grid):
    return lambda: fn(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def fwd_bwd(fn, x, grid, gV):
    xr, gr = x.clone().requires_grad_(), grid.clone().requires_grad_()
    def run():
        xr.grad = gr.grad = None
        fn(xr, gr, mode="bilinear", padding_mode="zeros", align_corners=False).backward(gV)
    return run


def time_pair(ours, ref, repeats, warmup=3):
    "Median seconds of `ours` and `ref`, run back to back in each repeat so that both see the same load."
    for _ in range(warmup):
        ours(); ref()
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t0 = time.perf_counter(); ours(); t1 = time.perf_counter(); ref(); t2 = time.perf_counter()
        t_ours.append(t1 - t0); t_ref.append(t2 - t1)
    return statistics.median(t_ours), statistics.median(t_ref)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20, help="timed repeats per case (default 20)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "sampler.json")
    args = p.parse_args(argv)

    cases = []
    for shape in SHAPES:
        x, grid, gV = make_case(shape)
        with torch.no_grad():                                      # the two samplers must agree before timing
            diff = (sample(x, grid) - F.grid_sample(x, grid, align_corners=False)).abs().max().item()
        f_ours, f_ref = time_pair(fwd(sample, x, grid), fwd(F.grid_sample, x, grid), args.repeats)
        b_ours, b_ref = time_pair(fwd_bwd(sample, x, grid, gV), fwd_bwd(F.grid_sample, x, grid, gV), args.repeats)
        cases.append({
            "shape": list(shape), "repeats": args.repeats, "max_abs_diff_forward": diff,
            "forward_ms": {"ours": 1e3 * f_ours, "reference": 1e3 * f_ref},
            "forward_backward_ms": {"ours": 1e3 * b_ours, "reference": 1e3 * b_ref},
            "ratio_forward": f_ours / f_ref, "ratio_forward_backward": b_ours / b_ref,
        })

    record = {
        "benchmark": "sampler: pstn.sampling.sample vs torch.nn.functional.grid_sample",
        "settings": {"device": "cpu", "dtype": "float32", "mode": "bilinear", "padding_mode": "zeros",
                     "align_corners": False, "grid": "affine_grid of identity + 0.1 * N(0, 1) per entry",
                     "statistic": "median", "warmup": 3},
        "goal": "forward+backward ratio (ours / reference) <= 3",
        "cases": cases,
        **run_info(), "load_average_1_5_15": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")

    print(f"torch {record['torch']}, {record['num_threads']} threads, {record['cpu_model']}, "
          f"load {record['load_average_1_5_15'][0]:.2f}")
    head = f"{'shape':<18} {'fwd ours':>9} {'fwd ref':>9} {'ratio':>6} {'f+b ours':>9} {'f+b ref':>9} {'ratio':>6}"
    print(head); print("-" * len(head))
    for c in cases:
        f, b = c["forward_ms"], c["forward_backward_ms"]
        print(f"{str(tuple(c['shape'])):<18} {f['ours']:>7.2f}ms {f['reference']:>7.2f}ms {c['ratio_forward']:>5.1f}x "
              f"{b['ours']:>7.2f}ms {b['reference']:>7.2f}ms {c['ratio_forward_backward']:>5.1f}x")
    print(f"median of {args.repeats} repeats; written to {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
