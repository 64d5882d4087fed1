"""How many 2-D CPAB steps keep the error below 1e-5: the measurement behind `CPAB2D(steps_per_rate=8)`.

Run from the repository root:

    .venv/bin/python benchmarks/cpab2d_steps.py        # a few minutes; writes results/benchmarks/cpab2d_steps.json

For each tessellation (2x2, 3x5, 4x4, 6x6) and each scale of theta (0.5, 1, 2 and 3 times draws from the prior,
length scale 0.1, variance 1), 8 seeded draws transform a 28 x 28 grid of [0, 1]^2 (borders and cell edges
included, as an image grid has them). Each draw is integrated with n = max(10, ceil(r * rho)) steps for
r = 3, 4, 5, 6 and 8, rho being the field's rate (its largest ||M_c||_inf), and compared with classical RK4 with
4000 steps in float64 on the same field. The record keeps every error and, for each r, the largest error and the
mean number of steps; it also says how many steps one batch of 64 draws at the prior's scale gets with r = 8
(the rate of a batch is its largest)."""
import json
import math
import time
from pathlib import Path

import torch

from common import run_info
from pstn.cpab2d import CPAB2D

ROOT = Path(__file__).resolve().parents[1]
TESS = [(2, 2), (3, 5), (4, 4), (6, 6)]
SCALES = [0.5, 1, 2, 3]
RATES = [3, 4, 5, 6, 8]
DRAWS, REF_STEPS, GRID = 8, 4000, 28


def rate(model, theta) -> float:
    M = model.field(theta).reshape(-1, 6)[:, [0, 1, 3, 4]].abs()
    return torch.maximum(M[:, 0] + M[:, 1], M[:, 2] + M[:, 3]).max().item()


def rk4(model, theta, p, steps):
    h = 1.0 / steps
    for _ in range(steps):
        k1 = model.velocity(p, theta); k2 = model.velocity(p + h / 2 * k1, theta)
        k3 = model.velocity(p + h / 2 * k2, theta); k4 = model.velocity(p + h * k3, theta)
        p = p + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return p


def main():
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(2)
    xs = torch.linspace(0, 1, GRID, dtype=torch.float64)
    p = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    rows = []
    for tess in TESS:
        model = CPAB2D(tess)
        for scale in SCALES:
            th = model.sample_prior(DRAWS, generator=g) * scale
            ref = rk4(model, th, p.expand(DRAWS, -1, -1).clone(), REF_STEPS)
            for i in range(DRAWS):
                rho = rate(model, th[i:i + 1])
                for r in RATES:
                    model.steps_per_rate = r
                    err = (model.transform(p, th[i:i + 1]) - ref[i:i + 1]).abs().max().item()
                    rows.append(dict(tess=list(tess), scale=scale, draw=i, rate=rho, r=r,
                                     steps=max(10, math.ceil(r * rho)), error=err))
    summary = {str(r): dict(max_error=max(x["error"] for x in rows if x["r"] == r),
                            mean_steps_at_prior=sum(x["steps"] for x in rows if x["r"] == r and x["scale"] == 1)
                            / sum(1 for x in rows if x["r"] == r and x["scale"] == 1),
                            worst=max((x for x in rows if x["r"] == r), key=lambda x: x["error"]))
               for r in RATES}
    batch = CPAB2D((4, 4))
    rho64 = rate(batch, batch.sample_prior(64, generator=torch.Generator().manual_seed(0)))
    out = dict(benchmark="2-D CPAB: error against the steps per unit of rate", grid=f"{GRID}x{GRID}",
               reference=f"RK4, {REF_STEPS} steps, float64", draws_per_case=DRAWS, tessellations=TESS,
               scales=SCALES, summary=summary,
               batch_of_64_at_prior=dict(tess=[4, 4], rate=rho64, steps_r8=max(10, math.ceil(8 * rho64))),
               rows=rows, **run_info(), run_s=time.perf_counter() - t0)
    path = ROOT / "results" / "benchmarks" / "cpab2d_steps.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for r, s in summary.items():
        print(f"r = {r}: largest error {s['max_error']:.1e} ({s['worst']['tess']}, scale {s['worst']['scale']}), "
              f"mean steps at the prior {s['mean_steps_at_prior']:.1f}")
    print(f"a batch of 64 prior draws (4x4): rate {rho64:.2f}, {out['batch_of_64_at_prior']['steps_r8']} steps at r = 8")
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
