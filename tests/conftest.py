from pathlib import Path
import configparser
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker runs one notebook at a time; with torch's default of one thread per core, two workers on a
    # 2-core machine oversubscribe it, and loops of many small tensor operations (CPAB integration) slow down
    # several-fold. One intra-op thread per worker keeps the cores busy without contention.
    # Child processes (papermill kernels of the experiment tests) inherit the same limit through the environment.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def settings() -> configparser.SectionProxy:
    "The nbdev settings of the project."
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    return cfg["DEFAULT"]


def toc_notebooks() -> list[Path]:
    "Every notebook listed in _toc.yml, in order."
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for c in part.get("chapters", []):
            files += [c["file"]] + [sec["file"] for sec in c.get("sections", [])]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]
