"""Training throughput of the project's loop against a bare PyTorch loop, on the CPU (issue: experiments I).

Run from the repository root:

    .venv/bin/python benchmarks/training.py            # writes results/benchmarks/training.json

The models are those of the MNIST experiments, on MNIST-shaped random data (N images 1x28x28, 10 classes; random
data keeps disk and decoding out of the measurement): the CNN (classifier `conv_net((1, 28, 28), 10)`), the affine
STN (localiser `conv_net((1, 28, 28), 32, channels=(16, 32), hidden=100)` + that classifier) and the affine P-STN
with S = 1 and S = 10 samples per image in training. Both classifier and localiser are trained.

For each model, one epoch over the same N images in batches of 64 is timed three ways, in the same process, on
the same model and the same batches:

* project: `pstn.training.train(model, data, epochs=1, progress=False)`;
* project + bars: the same with its tqdm progress bars on (written to /dev/null);
* bare: a DataLoader with the same order of batches, `model.loss`, `zero_grad`, `backward` and an Adam step,
  nothing else.

Each timed call includes what an epoch of each loop pays once (building the DataLoader and the optimiser).
Before timing, both loops run one epoch from the same weights and must end with the same weights (they see the
same batches and the same random draws), which checks that they do the same work. The repeats cycle through the
three loops, in an order that rotates from repeat to repeat so that a change of machine load hits all of them;
we report the median epoch time, images per second and the ratio project / bare. Goal: at most 1.1x. The
median CPU time of the process per epoch (all its threads) is recorded too: it is less disturbed by other
processes than the wall-clock time, though busy-waiting threads inflate it.

This is a measurement, not a test: the numbers depend on the machine and on whatever else it is running, so the
load average before and after is recorded, and for each model the mean number of cores that other processes kept
busy while it was timed (from /proc/stat, less this process's own CPU time).
"""
import argparse
import contextlib
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from pstn.families import get_family
from pstn.pstn import PSTN
from pstn.runner import hardware
from common import run_info
from pstn.stn import CNN, STN, conv_net, count_parameters
from pstn.training import epoch_seed, train

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 28, 28)
MODELS = {"CNN": ("cnn", 1), "STN": ("stn", 1), "P-STN S=1": ("pstn", 1), "P-STN S=10": ("pstn", 10)}
LR, SEED = 1e-3, 0


def build(kind: str, S: int = 1, seed: int = 0) -> torch.nn.Module:
    "The models of the MNIST experiments (affine family); P-STN with w = 3e-5 (the paper's rotated-MNIST value)."
    torch.manual_seed(seed)
    cls = conv_net(SHAPE, 10)
    if kind == "cnn": return CNN(cls)
    loc = conv_net(SHAPE, 32, channels=(16, 32), hidden=100)
    fam = get_family("affine")
    if kind == "stn": return STN(fam, loc, cls, SHAPE)
    return PSTN(fam, loc, cls, SHAPE, S_train=S, S_test=10, w=3e-5)


def random_mnist(n: int, seed: int = 0) -> TensorDataset:
    "n MNIST-shaped images in [0, 1) and labels in 0..9."
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g))


class OtherCPU:
    """Context manager: how many cores other processes kept busy meanwhile (mean over the block).

    From /proc/stat (all CPU time spent by the machine) minus the CPU time of this process and of its waited-for
    children (os.times); 0 means the benchmark had the machine to itself, whatever the load average says (the
    load average counts the benchmark's own threads too)."""
    @staticmethod
    def _busy_s() -> float:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_s() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self.b0, self.o0, self.t0 = self._busy_s(), self._own_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        self.cores = max(0.0, (self._busy_s() - self.b0) - (self._own_s() - self.o0)) / max(wall, 1e-9)


def bare_epoch(model: torch.nn.Module, data: TensorDataset, batch_size: int, seed: int = SEED) -> None:
    "One epoch of plain PyTorch: same batches (same shuffled order) and same random draws as `train` epoch 0."
    loader = DataLoader(data, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(epoch_seed(seed, 0)))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    model.train()
    torch.manual_seed(epoch_seed(seed, 0))
    for x, y in loader:
        loss, _ = model.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def project_epoch(model, data, batch_size, progress=False) -> None:
    if progress:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            train(model, data, epochs=1, batch_size=batch_size, lr=LR, seed=SEED, progress=True)
    else:
        train(model, data, epochs=1, batch_size=batch_size, lr=LR, seed=SEED, progress=False)


def same_work(model, data, batch_size) -> float:
    "Max |difference| of the weights after one epoch of each loop from the same start (0 if they do the same)."
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    project_epoch(a, data, batch_size)
    bare_epoch(b, data, batch_size)
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def time_loops(loops: dict, repeats: int, warmup: int = 1) -> dict:
    "Median seconds per loop; each repeat runs every loop once, starting from a different one each time."
    names = list(loops)
    for _ in range(warmup):
        for n in names: loops[n]()
    times, cpu = {n: [] for n in names}, {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            c0, t0 = time.process_time(), time.perf_counter()
            loops[n]()
            times[n].append(time.perf_counter() - t0); cpu[n].append(time.process_time() - c0)
    return {n: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                "median_cpu_s": statistics.median(cpu[n])} for n, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2048, help="images per epoch (default 2048)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=9, help="timed epochs per loop and model (default 9)")
    p.add_argument("--models", nargs="*", default=list(MODELS), help=f"subset of {list(MODELS)}")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "training.json")
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)

    load_before = list(os.getloadavg())
    data = random_mnist(args.images)
    cases = []
    for name in args.models:
        kind, S = MODELS[name]
        load0 = os.getloadavg()[0]
        model = build(kind, S)
        diff = same_work(model, data, args.batch_size)
        loops = {"project": lambda: project_epoch(model, data, args.batch_size),
                 "project_bars": lambda: project_epoch(model, data, args.batch_size, progress=True),
                 "bare": lambda: bare_epoch(model, data, args.batch_size)}
        with OtherCPU() as other: t = time_loops(loops, args.repeats)
        case = {"model": name, "kind": kind, "S": S, "parameters": count_parameters(model),
                "classifier_parameters": count_parameters(model.net),
                "max_abs_weight_diff_project_vs_bare": diff,
                "epoch_s": {k: v["median_s"] for k, v in t.items()},
                "epoch_s_range": {k: [v["min_s"], v["max_s"]] for k, v in t.items()},
                "images_per_s": {k: args.images / v["median_s"] for k, v in t.items()},
                "ratio_project_to_bare": t["project"]["median_s"] / t["bare"]["median_s"],
                "ratio_project_bars_to_bare": t["project_bars"]["median_s"] / t["bare"]["median_s"],
                "epoch_cpu_s": {k: v["median_cpu_s"] for k, v in t.items()},
                "cpu_ratio_project_to_bare": t["project"]["median_cpu_s"] / t["bare"]["median_cpu_s"],
                "load_average_1min_before_after": [load0, os.getloadavg()[0]],
                "other_processes_cores": other.cores}
        cases.append(case)
        print(f"{name:<11} bare {case['images_per_s']['bare']:7.0f} img/s, project {case['images_per_s']['project']:7.0f} "
              f"img/s ({case['ratio_project_to_bare']:.3f}x; CPU time {case['cpu_ratio_project_to_bare']:.3f}x), with bars {case['ratio_project_bars_to_bare']:.3f}x, "
              f"weights differ by {diff:.1e}  [load {os.getloadavg()[0]:.2f}, others used {other.cores:.2f} cores]", flush=True)

    hw = hardware()
    worst = max(c["ratio_project_to_bare"] for c in cases)
    record = {
        "benchmark": "training: pstn.training.train vs a bare PyTorch loop, images per second",
        "settings": {"device": "cpu", "dtype": "float32", "images_per_epoch": args.images, "input": list(SHAPE),
                     "classes": 10, "data": "random (torch.rand), labels uniform in 0..9",
                     "batch_size": args.batch_size, "optimizer": "Adam", "lr": LR, "family": "affine",
                     "classifier": "conv_net((1, 28, 28), 10)",
                     "localiser": "conv_net((1, 28, 28), 32, channels=(16, 32), hidden=100)",
                     "pstn": "w = 3e-5, alpha = 1", "repeats": args.repeats, "warmup_epochs": 1,
                     "statistic": "median epoch time"},
        "goal": "project / bare <= 1.1",
        "goal_met": worst <= 1.1, "worst_ratio": worst,
        "cases": cases,
        **run_info(),
        "load_average_1_5_15": load_before, "load_average_after_1_5_15": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"worst ratio {worst:.3f} ({'within' if worst <= 1.1 else 'outside'} the 1.1x goal); "
          f"load {load_before[0]:.2f} before, {record['load_average_after_1_5_15'][0]:.2f} after; "
          f"written to {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
