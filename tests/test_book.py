"""The site builds offline with warnings as errors, and what a reader sees is right.

The build here skips execution (the notebook tests execute every chapter; `make book` builds with execution):
it checks the Sphinx side — directives, hidden cells, Colab buttons, citations, bundled MathJax."""
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, settings, toc_notebooks
from pstn.report import GUARD_ABLATIONS

BIN = Path(sys.executable).parent


def page_text(path: Path) -> str:
    "The visible text of an HTML page: tags dropped, entities decoded, whitespace collapsed."
    raw = path.read_text()
    raw = re.sub(r"<(script|style)\b.*?</\1>|<!--.*?-->", " ", raw, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


def code_cells(nb: Path):
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] == "code":
            yield "".join(cell["source"]).splitlines()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"
    # Paths in a config resolve against the config's own folder: make them absolute for this copy.
    cfg["sphinx"]["local_extensions"] = {k: str(ROOT / v) for k, v in cfg["sphinx"]["local_extensions"].items()}
    cfg["bibtex_bibfiles"] = [str(ROOT / f) for f in cfg["bibtex_bibfiles"]]
    config = out / "_config.yml"
    config.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([str(BIN / "jupyter-book"), "build", str(ROOT), "--path-output", str(out),
                          "--config", str(config), "-W", "-n", "--keep-going"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return out / "_build" / "html"


def test_pages_exist(site: Path):
    for nb in toc_notebooks():
        assert (site / nb.relative_to(ROOT)).with_suffix(".html").is_file(), nb
    assert (site / "nbs" / "bibliography.html").is_file()


def test_no_directive_text_anywhere(site: Path):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 5
    bad = [str(p.relative_to(site)) for p in pages if "#|" in p.read_text() or "#|" in page_text(p)]
    assert not bad, f"nbdev directives visible in {bad}"


def test_hidden_cells_are_absent_and_others_present(site: Path):
    shown = hidden = 0
    for nb in toc_notebooks():
        text = page_text((site / nb.relative_to(ROOT)).with_suffix(".html"))
        for lines in code_cells(nb):
            body = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#|")]
            if not body: continue
            marker = " ".join(max(body, key=len).split())
            directives = {l.strip()[2:].strip() for l in lines if l.lstrip().startswith("#|")}
            if directives & {"hide", "echo: false", "hide_input", "include: false"}:
                assert marker not in text, f"{nb.name}: hidden code shown ({marker!r})"
                hidden += 1
            else:
                assert marker in text, f"{nb.name}: code cell missing ({marker!r})"
                shown += 1
    assert shown > 10 and hidden > 5, f"too few cells checked ({shown} shown, {hidden} hidden): the test tested nothing"


def test_colab_button_on_every_notebook(site: Path):
    user, repo, branch = settings()["user"], settings()["repo"], settings()["branch"]
    for nb in toc_notebooks():
        rel = nb.relative_to(ROOT).as_posix()
        page = (site / nb.relative_to(ROOT)).with_suffix(".html").read_text()
        url = f"https://colab.research.google.com/github/{user}/{repo}/blob/{branch}/{rel}"
        assert url in page, f"{rel}: no Colab button to {url}"


def test_citations_resolve(site: Path):
    bib = page_text(site / "nbs" / "bibliography.html")
    assert "probabilistic spatial transformer networks" in bib.lower() and "Jaderberg" in bib
    index = (site / "nbs" / "index.html").read_text()
    assert re.search(r'href="bibliography\.html#id\d+"', index), "index cites nothing that links to the bibliography"


def test_mathjax_is_bundled(site: Path):
    page = (site / "nbs" / "00_conventions.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in page
    assert not re.search(r"https?://[^\"']*mathjax", page, flags=re.I), "MathJax still loaded from a CDN"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_one_title_per_page(site: Path):
    "Each chapter has a single top-level heading: a Markdown cell rendered as a wall of headings fails this."
    for nb in toc_notebooks():
        page = (site / nb.relative_to(ROOT)).with_suffix(".html").read_text()
        article = re.search(r"<article\b.*?</article>", page, flags=re.S).group(0)
        n = len(re.findall(r"<h1\b", article))
        assert n == 1, f"{nb.name}: {n} <h1> headings in the article"


def test_markdown_outputs_render(tmp_path: Path):
    "Stored Markdown outputs render: `show_doc` (starts with a horizontal rule) and a generated table."
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    from nbdev.showdoc import show_doc
    from pstn.conventions import expect_shape
    md = show_doc(expect_shape)._repr_markdown_()
    assert md.startswith("---")
    out = new_output("display_data", data={"text/markdown": md, "text/plain": "<doc>"})
    table = new_output("display_data", data={"text/markdown": "| a | b |\n| --- | ---: |\n| 1 | 2 |", "text/plain": "t"})
    nb = new_notebook(cells=[new_markdown_cell("# Page"), new_code_cell("show_doc(expect_shape)", outputs=[out]),
                             new_code_cell("display(Markdown(table))", outputs=[table])],
                      metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    nbformat.write(nb, tmp_path / "page.ipynb")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"
    cfg["sphinx"]["local_extensions"] = {k: str(ROOT / v) for k, v in cfg["sphinx"]["local_extensions"].items()}
    cfg["bibtex_bibfiles"] = [str(ROOT / f) for f in cfg["bibtex_bibfiles"]]
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([str(BIN / "jupyter-book"), "build", str(tmp_path), "-W", "-n", "--keep-going"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    page = (tmp_path / "_build" / "html" / "page.html").read_text()
    assert "expect_shape" in page_text(tmp_path / "_build" / "html" / "page.html")
    assert "<table" in page and "| ---" not in page_text(tmp_path / "_build" / "html" / "page.html"), \
        "a Markdown table in a cell output was not rendered as a table"


def test_experiment_pages_show_their_published_results(site: Path):
    """Each experiment page shows, per published profile, its figures and key numbers, and links to its page of the
    report; the runs of the guard ablation are named there and linked to the report's ablation section."""
    published = ROOT / "results" / "experiments"
    exps = sorted(p.stem for p in (ROOT / "nbs" / "experiments").glob("*.ipynb"))
    assert exps
    for e in exps:
        page = site / "nbs" / "experiments" / f"{e}.html"
        raw, text = page.read_text(), page_text(page)
        assert "Published results" in text, e
        profiles = sorted(p.name for p in (published / e).iterdir() if (p / "record.json").is_file())
        assert profiles, f"{e}: no published run to show"
        ablation = GUARD_ABLATIONS.get(e, {})
        side = {ablation.get("on"), ablation.get("off")} - {"cpu", "paper", "smoke"}
        for prof in profiles:
            if prof in side:                                          # a guard-ablation run: named and linked
                assert prof in text and 'href="../report.html#report-guard"' in raw, f"{e}: {prof} not named"
                continue
            assert f"Profile {prof}:" in text, f"{e}: profile {prof} missing from its page"
            figs = sorted((published / e / prof).glob("*.png"))
            assert figs, f"{e}/{prof}: no figure published"
            for f in figs:                                            # each figure is on the page and was copied
                imgs = re.findall(r'<img alt="' + re.escape(f"{f.stem} ({prof})") + r'" src="([^"]+)"', raw)
                assert imgs, f"{e}: figure {prof}/{f.name} not on the page"
                assert any((page.parent / src).resolve().is_file() for src in imgs), f"{e}: {imgs} not in the site"
        link = f'href="../report/{e}.html#report-{e.replace("_", "-")}"'
        assert link in raw, f"{e}: no link to its page of the report"
        assert "*Run:*" not in text and "Run: profile" in text, f"{e}: provenance line missing or not rendered"
