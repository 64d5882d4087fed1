"""What every benchmark record says about where and when it ran; shared by the scripts in this folder (each is run
as `python benchmarks/<name>.py`, so this folder is on sys.path)."""
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from pstn.runner import hardware


def now_utc() -> str:
    "The current UTC time, ISO 8601, to the second."
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_info() -> dict:
    """torch and Python versions, torch threads, CPU model and core count, `pstn.runner.hardware()`, the UTC date
    and the command line of this run: the fields the performance page prints under each benchmark."""
    hw = hardware()
    return {"torch": torch.__version__, "python": platform.python_version(), "num_threads": torch.get_num_threads(),
            "cpu_model": hw["cpu"], "cpu_count": os.cpu_count(), "hardware": hw, "date_utc": now_utc(),
            "command": shlex.join([os.path.relpath(sys.executable), *sys.argv])}


def machine_key(record: dict) -> str:
    "How a benchmark record names its machine: CPU model and core count, and the GPU when one was used."
    hw = record.get("hardware") or {}
    key = f"{hw.get('cpu', record.get('cpu_model'))}, {hw.get('cpu_count', record.get('cpu_count'))} cores"
    return key + (f" + {hw['gpu']}" if hw.get("gpu") else "")


def save_for_machine(path, record: dict) -> dict:
    """Write `record` into `path` under `machines[machine_key(record)]`, keeping the records of other machines (a
    file of the older one-record form becomes one machine's entry). Returns what was written."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else {}
    machines = old.get("machines") or ({machine_key(old): old} if old.get("cpu_model") else {})
    machines[machine_key(record)] = record
    out = {"benchmark": record["benchmark"], "machines": machines}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


def spread(times: list) -> float:
    "Interquartile range over median: the relative spread of repeated timings."
    if len(times) < 2: return float("inf")
    q1, q2, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / q2


def stable_times(fns: dict, target: float = 0.05, min_repeats: int = 7, max_repeats: int = 200,
                 max_seconds: float = 60.0, warmup: int = 2) -> tuple[dict, bool]:
    """Time the callables `fns` (name -> callable, or None to skip), back to back in rounds so that all see the same
    load, until the spread (`spread`) of every one is at most `target`, or after `max_repeats` rounds or
    `max_seconds`. Returns ({name: {"median_ms", "spread", "repeats"} or None}, whether every spread reached the
    target). For CUDA, pass callables that synchronise (`cuda_synced`)."""
    live = {k: f for k, f in fns.items() if f is not None}
    for _ in range(warmup):
        for f in live.values(): f()
    t = {k: [] for k in live}
    t_start, ok = time.perf_counter(), False
    while live:
        for k, f in live.items():
            t0 = time.perf_counter(); f(); t[k].append(time.perf_counter() - t0)
        n = len(t[next(iter(t))])
        if n >= min_repeats and all(spread(v) <= target for v in t.values()):
            ok = True; break
        if n >= max_repeats or time.perf_counter() - t_start > max_seconds: break
    return ({k: None if k not in live else {"median_ms": 1e3 * statistics.median(t[k]), "spread": spread(t[k]),
                                            "repeats": len(t[k])} for k in fns}, ok)


def cuda_synced(fn):
    "`fn` followed by torch.cuda.synchronize(), so that a wall-clock timer sees the kernels finish."
    if fn is None: return None
    def run():
        fn(); torch.cuda.synchronize()
    return run
