"""Sweeps on several workers (pstn.sweep; its mechanisms are tested in nbs/13b_sweep.ipynb). One experiment's smoke
sweep, with both stages (a w grid, then the P-STN at the chosen w), gives the same metrics and the same pieces on
every executor; a worker killed mid-piece and a sweep killed mid-way both resume to the same result, computing only
what is missing; the optional executors are imported only when chosen."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from pstn import runner

EXP = "mnist_subsets"
EXP_DIR = ROOT / "nbs" / "experiments"
# threads=1: the kernel and every worker use one torch thread (the count can change a CPU sum's last digits);
# a w grid, so that both stages run; 60 steps, so that a piece lasts long enough to be killed mid-way.
OVERRIDES = {"threads": "1", "w_grid": "[0.001, 0.0003]", "train_steps": "60"}
PSTN = str(Path(sys.executable).with_name("pstn"))


def without_timing(x):
    "Metrics or a piece without their wall-clock entries (`seconds`), which every run measures anew."
    if isinstance(x, dict): return {k: without_timing(v) for k, v in x.items() if k != "seconds"}
    return x


def pieces(run_dir: Path) -> dict:
    return {f.name: without_timing(json.loads(f.read_text())) for f in sorted((run_dir / "pieces").glob("*.json"))}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    "The reference: the same sweep on the local executor (the notebook's own loop)."
    res = tmp_path_factory.mktemp("local")
    rec = runner.run_experiment(EXP, "smoke", OVERRIDES, results=res, exp_dir=EXP_DIR, progress=False)
    assert rec["executor"]["name"] == "local" and rec["attempts"][-1]["pieces"]["computed"] > 0
    return rec


def proc_cmdlines() -> dict[int, str]:
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try: out[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError: pass
    return out


def descendants(pid: int) -> list[int]:
    "Every process below `pid` (from /proc's parent ids), deepest last."
    children = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try: ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError): continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []): out.append(c); todo.append(c)
    return out


def kill_first(find, timeout: float = 120) -> dict:
    "In a thread: SIGKILL the first process `find()` returns (a pid or None); the dict says whom and when."
    got = {}
    def watch():
        t0 = time.time()
        while time.time() - t0 < timeout and not got.get("stop"):
            pid = find()
            if pid:
                try: os.kill(pid, signal.SIGKILL); got["pid"] = pid; return
                except ProcessLookupError: pass
            time.sleep(0.02)
    th = threading.Thread(target=watch, daemon=True); th.start()
    got["thread"] = th
    return got


@pytest.mark.parametrize("executor", ["ray", "slurm"])
def test_executors_give_the_same_metrics(executor, local, tmp_path):
    spec = {"name": executor, "workers": 2, "cluster": "local"}
    killed = {}
    if executor == "ray":
        # and a Ray worker killed while it computes a piece: Ray runs the task again elsewhere
        def ray_worker():
            return next((pid for pid, cmd in proc_cmdlines().items() if cmd.startswith("ray::_ray_piece")), None)
        killed = kill_first(ray_worker)
    rec = runner.run_experiment(EXP, "smoke", OVERRIDES, results=tmp_path, exp_dir=EXP_DIR, progress=False,
                                executor=spec)
    if killed:
        killed["stop"] = True; killed["thread"].join()
        assert "pid" in killed, "no Ray worker was seen computing a piece"
    assert rec["status"] == "finished"
    ex = rec["executor"]
    assert (ex["name"], ex["workers"], ex["threads"]) == (executor, 2, 1), ex
    assert [m["desc"] for m in ex["maps"]] == ["stage 1", "stage 2"]
    assert rec["attempts"][-1]["pieces"] == local["attempts"][-1]["pieces"]
    # the same numbers, to the last digit, and the same pieces under the same names
    assert without_timing(rec["metrics"]) == without_timing(local["metrics"])
    assert pieces(Path(rec["run_dir"])) == pieces(Path(local["run_dir"]))
    assert not list((Path(rec["run_dir"]) / "pieces").glob(".*")), "a lock or temporary file was left"


def test_killed_worker_and_interrupted_sweep_resume(local, tmp_path):
    cmd = [PSTN, "run", EXP, "--results-dir", str(tmp_path), "--no-progress", "--executor", "slurm",
           "--cluster", "local", "--workers", "2"]
    for k, v in OVERRIDES.items(): cmd += ["-p", k, v]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    folder = tmp_path / EXP

    def held_piece():
        "The pid of a worker holding a piece's lock (it writes its pid into the lock file)."
        for lock in folder.glob("*/pieces/.*.lock"):
            try: text = lock.read_text()
            except OSError: continue
            if text.startswith("pid "): return int(text.split()[1])
        return None

    # 1. one of the two workers is killed while it computes a piece
    killed = kill_first(held_piece)
    first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # 2. once a few pieces are stored, the whole sweep is killed: the runner, its kernel and the workers
    t0 = time.time()
    while first.poll() is None and time.time() - t0 < 300:
        if "pid" in killed and len(list(folder.glob("*/pieces/*.json"))) >= 4: break
        time.sleep(0.02)
    assert first.poll() is None, f"the sweep ended before it could be killed:\n{first.stdout.read()}"
    for pid in [first.pid] + descendants(first.pid):
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass
    first.wait()
    killed["stop"] = True; killed["thread"].join()
    assert "pid" in killed, "no worker was seen holding a piece"
    run_dir = next(folder.iterdir())
    stored = set(pieces(run_dir))
    time.sleep(0.5)
    assert set(pieces(run_dir)) == stored, "a worker outlived the kill"

    # 3. the same command again: it resumes, computing only the missing pieces, to the local executor's numbers
    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["status"] == "finished" and rec["resumed"] is True and len(rec["attempts"]) == 2
    total = set(pieces(run_dir))
    assert 0 < len(stored) < len(total) == len(pieces(Path(local["run_dir"])))
    assert rec["attempts"][-1]["pieces"]["computed"] == len(total - stored)
    assert without_timing(rec["metrics"]) == without_timing(local["metrics"])
    assert pieces(run_dir) == pieces(Path(local["run_dir"]))
    assert not list((run_dir / "pieces").glob(".*")), "a lock or temporary file was left"


def test_optional_executors_are_imported_only_when_chosen(tmp_path):
    code = ("import os, sys; os.environ['PSTN_RUN_DIR'] = sys.argv[1]\n"
            "from pstn.sweep import map_pieces\n"
            "assert map_pieces(lambda a: {'a2': a * a}, [dict(a=2)], progress=False) == [{'a2': 4}]\n"
            "print(sorted({'ray', 'submitit'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_experiment_without_pieces_refuses_other_executors(tmp_path):
    with pytest.raises(ValueError, match="declares no pieces with map_pieces"):
        runner.run_experiment("loss_landscape", "smoke", results=tmp_path, exp_dir=EXP_DIR, progress=False,
                              executor="ray")
    bad = subprocess.run([PSTN, "run", EXP, "--executor", "ray", "--workers", "0", "--results-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "workers must be an integer >= 1, got 0" in bad.stderr, bad.stderr


def test_a_piece_may_read_an_attribute_named_like_a_torch_pseudo_module(tmp_path):
    # cloudpickle sends every loaded submodule whose name the code mentions: `ds.classes` makes it send
    # torch.classes, a module-like object that plain pickling refuses (the UCR notebook reads `ds.classes`)
    code = ("import os, sys, types, torch; os.environ['PSTN_RUN_DIR'] = sys.argv[1]\n"
            "from pstn.sweep import map_pieces\n"
            "ds = types.SimpleNamespace(classes=['a', 'b', 'c'])\n"
            "def piece(a):\n"
            "    return {'n': len(ds.classes) + int(torch.ones(a).sum())}\n"
            "out = map_pieces(piece, [dict(a=1), dict(a=2)], progress=False,\n"
            "                 executor=dict(name='slurm', cluster='local', workers=2))\n"
            "assert out == [{'n': 4}, {'n': 5}], out\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True, text=True,
                   timeout=300)
