"""Cost of one P-STN training step against one STN step (issue: the probabilistic core).

    .venv/bin/python benchmarks/pstn_step.py            # writes results/benchmarks/pstn_step.json

One training step = forward, backward and an Adam step, on an MNIST-sized batch of 64 (1x28x28), affine family,
a small localiser (`conv_net(..., channels=(8, 16), hidden=32)`, between the MNIST-subsets and rotated-MNIST
localisers) and `conv_net`'s default classifier (the 28k-weight CNN of the experiments). Measured, in one run, as the median of repeated steps:

* the STN step and the P-STN step at S = 1, 2, 5, 10 (samples per image in training);
* the two parts the bound is made of: the localiser (trunk + heads, forward + backward, batch 64) and the
  sampler + classifier (forward + backward, batch 64). Only the second part sees S copies, so the P-STN step
  should cost at most about (loc + S * cls) / (loc + cls) STN steps; we report the measured ratio beside it;
* peak memory: each configuration runs in a fresh child process; we report the growth of its peak resident set
  size (ru_maxrss) over the steps, i.e. the memory the steps themselves needed beyond the model and the imports.
"""
import json, os, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "pstn_step.json"
B, REPEATS, WARMUP = 64, 30, 5


def build(kind: str, S: int):
    import torch
    from pstn.families import get_family
    from pstn.stn import STN, conv_net
    from pstn.pstn import PSTN
    torch.manual_seed(0)
    fam, shape = get_family("affine"), (1, 28, 28)
    loc, cls = conv_net(shape, 32, channels=(8, 16), hidden=32), conv_net(shape, 10)
    if kind == "stn": return STN(fam, loc, cls, shape)
    return PSTN(fam, loc, cls, shape, S_train=S, w=1e-4)


def time_steps(fn, repeats=REPEATS, warmup=WARMUP) -> float:
    for _ in range(warmup): fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def child(kind: str, S: int) -> dict:
    "Run in a fresh process: time the full step and its parts; report the peak RSS growth."
    import resource, torch
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else torch.get_num_threads())
    model = build(kind, S)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.rand(B, 1, 28, 28), torch.randint(0, 10, (B,))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step():
        loss, _ = model.loss(x, y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    t_step = time_steps(step)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"kind": kind, "S": S, "step_ms": 1e3 * t_step, "peak_rss_growth_mb": (rss1 - rss0) / 1024}
    if kind == "stn":                                   # the two parts of the bound, at batch 64
        def loc_part():
            theta = model.theta(x); theta.sum().backward()
        theta = model.theta(x).detach()
        def cls_part():
            torch.nn.functional.nll_loss(torch.log_softmax(model.net(model.transform(x, theta)), -1), y).backward()
        out["localiser_ms"], out["classifier_ms"] = 1e3 * time_steps(loc_part), 1e3 * time_steps(cls_part)
    return out


def main():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from common import run_info
    threads = torch.get_num_threads()
    load_before = list(os.getloadavg())
    runs = []
    for kind, S in [("stn", 1), ("pstn", 1), ("pstn", 2), ("pstn", 5), ("pstn", 10)]:
        r = subprocess.run([sys.executable, __file__, "--child", kind, str(S), str(threads)],
                           capture_output=True, text=True, check=True)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    stn = runs[0]
    loc, cls = stn["localiser_ms"], stn["classifier_ms"]
    rows = []
    for r in runs[1:]:
        bound = (loc + r["S"] * cls) / (loc + cls)
        ratio = r["step_ms"] / stn["step_ms"]
        rows.append({"S": r["S"], "step_ms": r["step_ms"], "ratio_to_stn": ratio, "bound": bound,
                     "ratio_over_bound": ratio / bound, "peak_rss_growth_mb": r["peak_rss_growth_mb"]})
    result = {"benchmark": "pstn_step", "batch": B, "input": [1, 28, 28], "family": "affine",
              "repeats": REPEATS, "statistic": "median", "threads": threads,
              **run_info(),
              "load_average_1_5_15": load_before, "load_average_after_1_5_15": list(os.getloadavg()),
              "stn": stn, "pstn": rows,
              "note": "bound = (localiser + S * classifier) / (localiser + classifier), parts timed at batch 64 "
                      "in the STN process; peak memory = growth of ru_maxrss during the steps, fresh process each"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"S={r['S']:2d}: {r['step_ms']:.1f} ms = {r['ratio_to_stn']:.2f}x STN "
              f"(bound {r['bound']:.2f}x, {r['ratio_over_bound']:.2f} of it), peak +{r['peak_rss_growth_mb']:.0f} MB")
    print("wrote", OUT.relative_to(ROOT))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
