"""Every chapter opens on Colab: its first cell installs pstn, with what the chapters import (the `notebooks`
extra), from the repository the site points at."""
import json

import yaml

from conftest import ROOT, settings, toc_notebooks


def test_repository_url_is_consistent():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    git_url = settings()["git_url"]
    assert cfg["repository"]["url"] == git_url
    assert git_url == f"https://github.com/{settings()['user']}/{settings()['repo']}"
    assert cfg["repository"]["branch"] == settings()["branch"]
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


def test_first_cell_installs_pstn_on_colab():
    url = settings()["git_url"]
    nbs = toc_notebooks() + sorted((ROOT / "nbs" / "experiments").glob("*.ipynb"))
    assert len(nbs) >= 4
    for nb in nbs:
        first = json.loads(nb.read_text())["cells"][0]
        src = "".join(first["source"])
        assert first["cell_type"] == "code" and src.startswith("#| hide"), nb.name
        assert '"google.colab" in sys.modules' in src and f'pip install -q "pstn[notebooks] @ git+{url}"' in src, nb.name
