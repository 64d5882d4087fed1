"""Wall time of a cpu-profile sweep on 1 and 2 local workers (issue: sweeps beyond one machine).

Run from the repository root:

    .venv/bin/python benchmarks/sweep.py                   # mnist_subsets, cpu profile: about 40 min on 2 cores
    .venv/bin/python benchmarks/sweep.py --experiment ucr  # about 80 min
    .venv/bin/python benchmarks/sweep.py -p folds 2        # a smaller sweep; the record says what was changed

Each setting runs the whole experiment with `pstn.runner.run_experiment`, in a fresh results folder (no piece is
reused), on the Ray executor with a local cluster of `workers` CPUs. The cpu profiles set `threads: 1`, so each
piece, and the notebook's kernel, uses one torch thread. Reported for each number of workers: the run's wall
time (its record's `duration_s`), the time of each stage (`map_pieces` call) and the time spent outside the
stages (the kernel's own work: loading data, drawing figures, training the models of a figure); then the
speed-up t(1 worker) / t(2 workers), against the bound of 2 that two cores allow, and whether the two runs'
metrics are identical (they must be: a piece's result does not depend on where it is computed).

Writes results/benchmarks/sweep.json.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import now_utc, run_info
from pstn import runner

ROOT = Path(__file__).resolve().parents[1]


def without_timing(x):
    if isinstance(x, dict): return {k: without_timing(v) for k, v in x.items() if k != "seconds"}
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="mnist_subsets")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[])
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "sweep.json"))
    args = ap.parse_args()
    overrides = dict(args.parameter)
    info = run_info()
    runs = {}
    load_before = os.getloadavg()
    for n in args.workers:
        with tempfile.TemporaryDirectory(prefix="pstn-sweep-bench-") as res:
            print(f"{args.experiment} ({args.profile}) on {n} worker(s) ...", flush=True)
            t0 = time.perf_counter()
            rec = runner.run_experiment(args.experiment, args.profile, overrides, results=res,
                                        exp_dir=ROOT / "nbs" / "experiments", progress=False,
                                        executor={"name": "ray", "workers": n})
            wall = time.perf_counter() - t0
        ex = rec["executor"]
        stages = [{k: m[k] for k in ("desc", "pieces", "computed", "reused", "seconds")} for m in ex["maps"]]
        runs[str(n)] = dict(workers=ex["workers"], threads=ex["threads"], duration_s=rec["duration_s"],
                            wall_s=round(wall, 3), stages=stages,
                            outside_stages_s=round(rec["duration_s"] - sum(s["seconds"] for s in stages), 3),
                            metrics=without_timing(rec["metrics"]), parameters=rec["parameters"])
        print(f"  {rec['duration_s']:.1f} s; stages " +
              ", ".join(f"{s['desc']}: {s['seconds']:.1f} s ({s['computed']} pieces)" for s in stages), flush=True)
    out = dict(benchmark="sweep", experiment=args.experiment, profile=args.profile, overrides=overrides,
               executor="ray (local cluster)", info=info, load_before=load_before, load_after=os.getloadavg(),
               runs={k: {kk: vv for kk, vv in v.items() if kk != "metrics"} for k, v in runs.items()})
    if "1" in runs:
        for k, v in runs.items():
            out["runs"][k]["speedup"] = round(runs["1"]["duration_s"] / v["duration_s"], 3)
            out["runs"][k]["bound"] = min(int(k), info["cpu_count"])
            out["runs"][k]["same_metrics_as_1"] = v["metrics"] == runs["1"]["metrics"]
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: {kk: v.get(kk) for kk in ("duration_s", "speedup", "same_metrics_as_1")}
                      for k, v in out["runs"].items()}, indent=1))
    print(f"wrote {args.out} at {now_utc()}")


if __name__ == "__main__":
    main()
