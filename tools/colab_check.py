"""Run the book as a new Colab user would: `make colab-check`.

1. A fresh virtual environment (`_colab/venv`) holds only what a Colab runtime ships (requirements/colab.txt, at the
   project's pinned versions; torch and torchvision as the Makefile installs them).
2. The first cell of a chapter is run as Colab runs it: its `%pip install ... "pstn[notebooks] @ git+<repo>"`,
   with the repository address replaced by a wheel built from this checkout (this machine reaches no GitHub).
3. Chapters are executed from an empty folder (Colab has no repository files), and one experiment's smoke profile
   runs with the `pstn run` of that installation.

It writes `_colab/report.json` and prints it: what the first cell installed, which notebooks ran, and how each went.
Exit status 1 if any of them failed.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "_colab"
VENV = WORK / "venv"
PY = VENV / "bin" / "python"
CHAPTERS = ["nbs/06_distributions.ipynb", "nbs/10_metrics.ipynb"]     # scipy, sympy, mpmath, nbdev, torchmetrics
EXPERIMENT = "rotated_mnist"
TORCH = os.environ.get("TORCH", "torch==2.14.1 torchvision==0.29.1")


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    print("$", cmd if isinstance(cmd, str) else shlex.join(map(str, cmd)), flush=True)
    return subprocess.run(cmd, shell=isinstance(cmd, str), text=True, capture_output=True, **kw)


def freeze() -> dict[str, str]:
    out = sh([PY, "-m", "pip", "freeze", "--all"]).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def first_cell_command(nb: Path, wheel: Path) -> str:
    "The chapter's own install command, as Colab would run it, with the git address replaced by the local wheel."
    src = "".join(json.loads(nb.read_text())["cells"][0]["source"])
    m = re.search(r'%pip install (.*)$', src, re.M)
    if m is None: raise SystemExit(f"{nb}: no %pip install in the first cell")
    args = m.group(1).replace("git+https://github.com/pstn-book/pstn", wheel.as_uri())
    return f"{shlex.quote(str(PY))} -m pip install {args}"


def main() -> int:
    if WORK.exists(): shutil.rmtree(WORK)
    WORK.mkdir()
    report = {"colab_packages": str((ROOT / "requirements" / "colab.txt").relative_to(ROOT)), "steps": []}
    t0 = time.perf_counter()
    sh([sys.executable, "-m", "venv", VENV]).check_returncode()
    r = sh(f"{shlex.quote(str(PY))} -m pip install -q {TORCH}")
    if r.returncode: print(r.stdout, r.stderr); return 1
    r = sh([PY, "-m", "pip", "install", "-q", "-c", ROOT / "requirements" / "constraints.txt",
            "-r", ROOT / "requirements" / "colab.txt"])
    if r.returncode: print(r.stdout, r.stderr); return 1
    before = freeze()
    report["runtime"] = {"python": sh([PY, "-c", "import platform; print(platform.python_version())"]).stdout.strip(),
                         "packages": len(before), "seconds": round(time.perf_counter() - t0)}
    dist = WORK / "dist"
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT]).check_returncode()
    (wheel,) = dist.glob("pstn-*.whl")
    cmd = first_cell_command(ROOT / CHAPTERS[0], wheel)
    r = sh(cmd)
    after = freeze()
    report["first_cell"] = {"command": cmd.replace(str(ROOT), "<checkout>"), "returncode": r.returncode,
                            "installed": {k: v for k, v in after.items() if before.get(k) != v}}
    if r.returncode: print(r.stdout[-3000:], r.stderr[-3000:])
    # Colab's working folder: no repository files, and outside this checkout (pstn and nbdev both look upwards
    # from the working directory for a repository).
    content = Path(tempfile.mkdtemp(prefix="colab-content-"))
    report["content_folder"] = "a new temporary folder outside the checkout"
    ok = r.returncode == 0
    for rel in CHAPTERS:
        nb = ROOT / rel
        shutil.copy(nb, content / nb.name)
        t = time.perf_counter()
        r = sh([PY, "-m", "papermill", nb.name, f"out_{nb.name}", "-k", "python3", "--no-progress-bar"], cwd=content)
        step = {"notebook": rel, "ok": r.returncode == 0, "seconds": round(time.perf_counter() - t, 1)}
        if r.returncode: step["error"] = (r.stderr or r.stdout)[-1500:]
        report["steps"].append(step); ok &= step["ok"]
    t = time.perf_counter()
    r = sh([VENV / "bin" / "pstn", "run", EXPERIMENT, "--profile", "smoke", "--no-progress"], cwd=content)
    recs = list((content / "_results" / EXPERIMENT).glob("smoke-*/record.json"))
    rec = json.loads(recs[0].read_text()) if recs else {}
    step = {"notebook": f"pstn run {EXPERIMENT} --profile smoke", "ok": r.returncode == 0 and rec.get("status") == "finished",
            "seconds": round(time.perf_counter() - t, 1), "experiment_notebook": rec.get("notebook", "").replace(str(VENV), "<venv>"),
            "metrics": {k: v for k, v in rec.get("metrics", {}).items() if "accuracy" in k}}
    if not step["ok"]: step["error"] = (r.stdout + r.stderr)[-3000:]
    report["steps"].append(step); ok &= step["ok"]
    report["ok"] = bool(ok)
    shutil.rmtree(content, ignore_errors=True)
    (WORK / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
