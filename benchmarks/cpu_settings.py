"""Which settings make CPU training fastest on this machine (issue: experiments I, performance of training).

Run from the repository root:

    .venv/bin/python benchmarks/cpu_settings.py        # writes results/benchmarks/cpu_settings.json (~20 min)

Every measurement trains with the project's loop (`pstn.training.train`, progress bars off) in a fresh child
process, so that thread pools, compiled code and memory start clean. Models (as in benchmarks/training.py):
the MNIST CNN, affine STN and affine P-STN with S = 10 on MNIST-shaped random data, and, for the thread studies,
the UCR P-STN (1-D CPAB time warps, 10 cells, S = 10, widths 16/32, hidden 64) on FaceAll-shaped random series
(1 x 131, 14 classes, batch 32), as in the ucr experiment's cpu profile. Each child runs one warm-up epoch
(timed too: with `torch.compile` it holds the compilation), then timed epochs; we report images (or series) per
second from the median epoch. Studies:

* threads: 1 or 2 torch threads (torch.set_num_threads and OMP_NUM_THREADS), one process alone;
* oversubscription: two processes at once (as when two experiments run side by side on the 2 cores), each with
  2 threads, each with 2 threads and OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning),
  or each with 1 thread. Only epochs that ran while both processes were running count; the sum of the two
  throughputs is the machine's total;
* channels_last: the model in torch.channels_last memory format (2 threads, and 1 thread; batch 64);
* channels_last_profile: where the time of one STN epoch goes (torch.profiler, self CPU time of the six most
  expensive operators, 1 thread), in the default layout and in channels-last;
* torch.compile: the classifier and the localiser compiled with torch.compile (inductor, default mode; a
  fresh cache directory, so the first epoch includes the full compilation); a failure is recorded, not raised;
* batch size: 32, 64, 128, 256 (2 threads).

Baseline: 2 threads, batch 64 (32 for UCR), contiguous format, eager. A measurement, not a test; the load average
is recorded before and after each study, and for each measurement the mean number of cores that other processes
(not this script or its children) kept busy meanwhile.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import now_utc, run_info      # noqa: E402
from training import OtherCPU                     # noqa: E402  (cores other processes kept busy meanwhile)
MNIST_MODELS = ["CNN", "STN", "P-STN S=10"]
IMAGES = {"CNN": 4096, "STN": 2048, "P-STN S=10": 1024, "UCR P-STN S=10": 512}
DEFAULT_BATCH = {"CNN": 64, "STN": 64, "P-STN S=10": 64, "UCR P-STN S=10": 32}


# ---------------------------------------------------------------------------------------------------- child side
def build(model: str, n: int):
    import torch
    from torch.utils.data import TensorDataset
    from pstn.families import get_family
    from pstn.pstn import PSTN
    from pstn.stn import conv_net
    from training import build as build_mnist, random_mnist
    if model == "UCR P-STN S=10":
        shape, K = (1, 131), 14
        torch.manual_seed(0)
        cls = conv_net(shape, K, channels=(16, 32), hidden=64)
        loc = conv_net(shape, 64, channels=(16, 32), hidden=64)
        net = PSTN(get_family("cpab1d", nc=10), loc, cls, shape, S_train=10, S_test=10, w=1e-4, init_var=1e-3,
                   bound=1.0)
        g = torch.Generator().manual_seed(0)
        return net, TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(0, K, (n,), generator=g))
    kind, S = {"CNN": ("cnn", 1), "STN": ("stn", 1), "P-STN S=10": ("pstn", 10)}[model]
    return build_mnist(kind, S), random_mnist(n)


def child(cfg: dict) -> dict:
    import torch
    from pstn.training import train
    torch.set_num_threads(cfg["threads"])
    model, data = build(cfg["model"], cfg["images"])
    if cfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if cfg.get("compile"):
        model.net = torch.compile(model.net)
        if hasattr(model, "localiser"): model.localiser = torch.compile(model.localiser)
    bs = cfg.get("batch_size") or DEFAULT_BATCH[cfg["model"]]
    epoch = lambda: train(model, data, epochs=1, batch_size=bs, lr=1e-3, seed=0, progress=False)
    t0 = time.perf_counter(); epoch(); first = time.perf_counter() - t0
    if cfg.get("barrier"):                        # start the timed epochs together with the other process
        Path(cfg["barrier"], str(cfg["rank"])).touch()
        while len(list(Path(cfg["barrier"]).iterdir())) < 2: time.sleep(0.01)
    spans = []
    for _ in range(cfg["repeats"]):
        a = time.time(); epoch(); spans.append((a, time.time()))
    return {"first_epoch_s": first, "spans": spans, "n": len(data), "batch_size": bs,
            "threads": torch.get_num_threads()}


def child_profile(cfg: dict) -> dict:
    "Self CPU time per operator (ms) over one epoch of `train`, default layout and channels-last (torch.profiler)."
    import torch
    from torch.profiler import ProfilerActivity, profile
    from pstn.training import train
    torch.set_num_threads(cfg["threads"])
    out = {}
    for layout in ("default", "channels_last"):
        model, data = build(cfg["model"], cfg["images"])
        if layout == "channels_last": model = model.to(memory_format=torch.channels_last)
        epoch = lambda: train(model, data, epochs=1, batch_size=64, lr=1e-3, seed=0, progress=False)
        epoch()
        with profile(activities=[ProfilerActivity.CPU]) as prof: epoch()
        ops = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
        out[layout] = {"total_ms": sum(ops.values()), "ops_ms": ops}
    top = sorted(out["default"]["ops_ms"], key=out["default"]["ops_ms"].get, reverse=True)[:cfg.get("top", 6)]
    for layout in out: out[layout]["ops_ms"] = {k: out[layout]["ops_ms"].get(k, 0.0) for k in top}
    return out


# --------------------------------------------------------------------------------------------------- parent side
def launch(cfg: dict, env_extra: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), MKL_NUM_THREADS=str(cfg["threads"]))
    tmp = []
    if cfg.get("compile"):
        tmp.append(tempfile.mkdtemp(prefix="inductor-"))                         # cold: compile time included
        env["TORCHINDUCTOR_CACHE_DIR"] = tmp[-1]
    if cfg.get("barrier"): tmp.append(cfg["barrier"])
    env.update(env_extra or {})
    proc = subprocess.Popen([sys.executable, __file__, "--profile" if cfg.get("profile") else "--child",
                             json.dumps(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.tmp_dirs = tmp
    return proc


def collect(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    for d in proc.tmp_dirs: shutil.rmtree(d, ignore_errors=True)
    if proc.returncode != 0:
        lines = [l for l in err.strip().splitlines() if l.strip()]
        return {"error": (lines[-1] if lines else f"exit code {proc.returncode}")[:500]}
    return json.loads(out.strip().splitlines()[-1])


def summarise(res: dict, window: tuple | None = None) -> dict:
    "Median epoch -> items per second; with `window`, only epochs that lie inside it."
    if "error" in res: return res
    spans = [s for s in res["spans"] if window is None or (s[0] >= window[0] and s[1] <= window[1])]
    if not spans: return {"error": "no epoch inside the overlap window", "first_epoch_s": res["first_epoch_s"]}
    med = statistics.median(b - a for a, b in spans)
    return {"images_per_s": res["n"] / med, "epoch_s": med, "epochs_timed": len(spans),
            "first_epoch_s": res["first_epoch_s"], "batch_size": res["batch_size"], "threads": res["threads"]}


def run_one(cfg: dict, env_extra: dict | None = None) -> dict:
    with OtherCPU() as other: r = summarise(collect(launch(cfg, env_extra)))
    r["other_processes_cores"] = other.cores
    print(f"  {cfg} {env_extra or ''}: " + (f"{r['images_per_s']:.0f} /s (first epoch {r['first_epoch_s']:.1f} s)"
          if "error" not in r else f"FAILED: {r['error']}") + f"  [load {os.getloadavg()[0]:.2f}, others {other.cores:.2f} cores]", flush=True)
    return {**cfg, **(env_extra and {"env": env_extra} or {}), **r}


def run_pair(cfg: dict, env_extra: dict | None = None) -> dict:
    "Two identical processes at once; only the epochs inside the time both ran count."
    with OtherCPU() as other:
        barrier = tempfile.mkdtemp(prefix="barrier-")
        procs = [launch({**cfg, "barrier": barrier, "rank": r}, env_extra) for r in (0, 1)]
        raw = [collect(p) for p in procs]
    if any("error" in r for r in raw): return {**cfg, "error": [r.get("error") for r in raw]}
    window = (max(r["spans"][0][0] for r in raw), min(r["spans"][-1][1] for r in raw))
    each = [summarise(r, window) for r in raw]
    out = {**cfg, **(env_extra and {"env": env_extra} or {}), "processes": 2, "each": each,
           "other_processes_cores": other.cores}
    if all("error" not in e for e in each):
        out["images_per_s"] = sum(e["images_per_s"] for e in each)
        out["images_per_s_each"] = [e["images_per_s"] for e in each]
    print(f"  2 x {cfg} {env_extra or ''}: " + (f"{out['images_per_s']:.0f} /s in total"
          if "images_per_s" in out else f"FAILED: {each}") + f"  [load {os.getloadavg()[0]:.2f}, others {other.cores:.2f} cores]", flush=True)
    return out


def study(name: str, fn) -> dict:
    print(name, flush=True)
    before = list(os.getloadavg())
    rows = fn()
    return {"rows": rows, "load_average_before": before, "load_average_after": list(os.getloadavg()),
            "date_utc": now_utc()}


def profile_rows(model: str, images: int, threads: int) -> list:
    cfg = {"model": model, "images": images, "threads": threads, "profile": True}
    with OtherCPU() as other: r = collect(launch(cfg))
    print(f"  {cfg}: " + ("FAILED: " + r["error"] if "error" in r else
          f"{r['default']['total_ms']:.0f} ms -> {r['channels_last']['total_ms']:.0f} ms") +
          f"  [others {other.cores:.2f} cores]", flush=True)
    return [{**cfg, **r, "other_processes_cores": other.cores}]


def main(argv=None):
    import torch
    from pstn.runner import hardware
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per child (default 5)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the images per epoch (quick trials: 0.25)")
    p.add_argument("--studies", nargs="*", default=["threads", "oversubscription", "channels_last",
                                                       "channels_last_profile", "compile", "batch_size"])
    p.add_argument("--update", action="store_true",
                   help="keep the other studies of an existing --out file and replace only the ones run now")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "cpu_settings.json")
    args = p.parse_args(argv)
    R = args.repeats
    cfg = lambda model, **kw: {"model": model, "images": max(256, int(args.scale * IMAGES[model])) // 256 * 256,
                               "threads": 2, "repeats": R, **kw}
    load_start = list(os.getloadavg())
    studies = {}
    if "threads" in args.studies:
        studies["threads"] = study("threads", lambda: [
            run_one(cfg(m, threads=t)) for m in MNIST_MODELS + ["UCR P-STN S=10"] for t in (1, 2)])
    if "oversubscription" in args.studies:
        studies["oversubscription"] = study("oversubscription", lambda: [
            run_pair(cfg(m, threads=t, repeats=2 * R), env) for m in ("STN", "UCR P-STN S=10")
            for t, env in ((2, None), (2, {"OMP_WAIT_POLICY": "PASSIVE"}), (1, None))])
    if "channels_last" in args.studies:
        studies["channels_last"] = study("channels_last", lambda: [
            run_one(cfg(m, threads=t, channels_last=c)) for t in (2, 1) for m in MNIST_MODELS for c in (False, True)])
    if "channels_last_profile" in args.studies:
        studies["channels_last_profile"] = study("channels_last_profile", lambda: profile_rows(
            "STN", cfg("STN")["images"], 1))
    if "compile" in args.studies:
        studies["compile"] = study("compile", lambda: [
            run_one(cfg(m, compile=c)) for m in MNIST_MODELS for c in (False, True)])
    if "batch_size" in args.studies:
        studies["batch_size"] = study("batch_size", lambda: [
            run_one(cfg(m, batch_size=b)) for m in MNIST_MODELS for b in (32, 64, 128, 256)])

    hw = hardware()
    record = {
        "benchmark": "cpu_settings: images per second of pstn.training.train under different CPU settings",
        "settings": {"images_per_epoch": {m: cfg(m)["images"] for m in IMAGES}, "default_batch_size": DEFAULT_BATCH, "timed_epochs": R,
                     "warmup_epochs": 1, "statistic": "median epoch time", "lr": 1e-3, "optimizer": "Adam",
                     "mnist_models": "as benchmarks/training.py (affine family; P-STN w = 3e-5)",
                     "ucr_model": "PSTN, cpab1d nc=10, S=10, conv_net widths (16, 32), hidden 64, input (1, 131), "
                                  "14 classes, w=1e-4, init_var=1e-3, bound=1.0"},
        "studies": studies,
        **run_info(),
        "parallel_backend": "OpenMP (libgomp)" if "OpenMP" in torch.__config__.parallel_info() else "other",
        "load_average_1_5_15": load_start, "load_average_after_1_5_15": list(os.getloadavg()),
    }
    if args.update and args.out.exists():                 # keep the earlier studies, note this partial rerun
        old = json.loads(args.out.read_text())
        old["studies"].update(studies)
        old.setdefault("updates", []).append({k: record[k] for k in (
            "date_utc", "command", "load_average_1_5_15", "load_average_after_1_5_15")} | {"studies": list(studies)})
        record = old
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"load {load_start[0]:.2f} at the start, {record['load_average_after_1_5_15'][0]:.2f} at the end; "
          f"written to {os.path.relpath(args.out)}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
    elif len(sys.argv) > 2 and sys.argv[1] == "--profile":
        print(json.dumps(child_profile(json.loads(sys.argv[2]))))
    else:
        main()
