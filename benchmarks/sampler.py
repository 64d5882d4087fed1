"""Time the book's sampler against PyTorch's fused one, on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/sampler.py

It times the forward pass and the forward plus backward pass of `pstn.sampling.sample` (the sampler derived in
nbs/02_sampling.ipynb, with its hand-written backward) and of `torch.nn.functional.grid_sample`: bilinear, zero
padding, align_corners=False, on random near-identity affine grids, at batch shapes (64, 1, 28, 28) and
(64, 3, 96, 96). For forward plus backward, both the input and the grid require gradients. Each repeat runs ours
and the reference back to back, after a warm-up; the repeats go on until the spread of each (interquartile range
over median) is at most --spread (default 5%), or --max-repeats rounds or --max-seconds have passed, and the
medians are reported with their ratio (ours / reference), the spread and the number of repeats. On a machine with
CUDA, the same cases are also timed on the GPU (synchronised after every call).

It prints a table and writes its record into results/benchmarks/sampler.json (or --out) under this machine's name
(CPU model and core count, and GPU), keeping the records of other machines. This is a measurement, not a test: the
numbers depend on the machine and on whatever else it is running (the load average is recorded).
"""
import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from common import cuda_synced, machine_key, run_info, save_for_machine, stable_times
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spread", type=float, default=0.05, help="target spread (IQR / median) of each timing")
    p.add_argument("--max-repeats", type=int, default=200)
    p.add_argument("--max-seconds", type=float, default=60.0, help="per case and pass")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "sampler.json")
    args = p.parse_args(argv)
    load_start = list(os.getloadavg())
    limits = dict(target=args.spread, max_repeats=args.max_repeats, max_seconds=args.max_seconds, warmup=3)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    cases = []
    for shape in SHAPES:
        x0, grid0, gV0 = make_case(shape)
        case = {"shape": list(shape)}
        for dev in devices:
            x, grid, gV = (v.to(dev) for v in (x0, grid0, gV0))
            sync = cuda_synced if dev == "cuda" else (lambda f: f)
            with torch.no_grad():                                  # the two samplers must agree before timing
                diff = (sample(x, grid) - F.grid_sample(x, grid, align_corners=False)).abs().max().item()
            f, f_ok = stable_times({"ours": sync(fwd(sample, x, grid)),
                                    "reference": sync(fwd(F.grid_sample, x, grid))}, **limits)
            b, b_ok = stable_times({"ours": sync(fwd_bwd(sample, x, grid, gV)),
                                    "reference": sync(fwd_bwd(F.grid_sample, x, grid, gV))}, **limits)
            res = {"max_abs_diff_forward": diff,
                   "forward_ms": {k: v["median_ms"] for k, v in f.items()},
                   "forward_backward_ms": {k: v["median_ms"] for k, v in b.items()},
                   "spread": {"forward": {k: v["spread"] for k, v in f.items()},
                              "forward_backward": {k: v["spread"] for k, v in b.items()}},
                   "repeats": {"forward": f["ours"]["repeats"], "forward_backward": b["ours"]["repeats"]},
                   "spread_target_reached": f_ok and b_ok,
                   "ratio_forward": f["ours"]["median_ms"] / f["reference"]["median_ms"],
                   "ratio_forward_backward": b["ours"]["median_ms"] / b["reference"]["median_ms"]}
            if dev == "cpu": case.update(res)
            else: case["cuda"] = res
        cases.append(case)

    record = {
        "benchmark": "sampler: pstn.sampling.sample vs torch.nn.functional.grid_sample",
        "settings": {"devices": devices, "dtype": "float32", "mode": "bilinear", "padding_mode": "zeros",
                     "align_corners": False, "grid": "affine_grid of identity + 0.1 * N(0, 1) per entry",
                     "statistic": "median", "warmup": 3, "spread": "interquartile range / median",
                     "spread_target": args.spread, "max_repeats": args.max_repeats,
                     "max_seconds": args.max_seconds},
        "goal": "forward+backward ratio (ours / reference) <= 3",
        "cases": cases,
        **run_info(), "load_average_1_5_15": load_start, "load_average_after_1_5_15": list(os.getloadavg()),
    }
    save_for_machine(args.out, record)

    print(f"torch {record['torch']}, {record['num_threads']} threads, {record['cpu_model']}, "
          f"load {record['load_average_1_5_15'][0]:.2f}")
    head = f"{'shape':<18} {'fwd ours':>9} {'fwd ref':>9} {'ratio':>6} {'f+b ours':>9} {'f+b ref':>9} {'ratio':>6}"
    print(head); print("-" * len(head))
    for c in cases:
        for dev, r in [("cpu", c)] + ([("cuda", c["cuda"])] if "cuda" in c else []):
            f, b = r["forward_ms"], r["forward_backward_ms"]
            print(f"{str(tuple(c['shape'])) + ' ' + dev:<18} {f['ours']:>7.2f}ms {f['reference']:>7.2f}ms "
                  f"{r['ratio_forward']:>5.1f}x {b['ours']:>7.2f}ms {b['reference']:>7.2f}ms "
                  f"{r['ratio_forward_backward']:>5.1f}x  spread <= "
                  f"{max(max(v.values()) for v in r['spread'].values()):.1%} after {r['repeats']['forward_backward']} repeats")
    print(f"medians; written to {os.path.relpath(args.out)} as {machine_key(record)!r}")


if __name__ == "__main__":
    main()
