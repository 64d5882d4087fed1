from pathlib import Path
import configparser

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
        files += [c["file"] for c in part.get("chapters", [])]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]
