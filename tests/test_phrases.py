"""The book's text is about its subject: spatial transformers, their code and their experiments.

It says nothing about the computers it happened to be built on ("a busy 2-core machine", "no web site is
reachable"), the goals set for writing it ("the issue's goals", "goal met: no") or its to-do state ("still to
be written", "TODO"). Performance figures may still name the hardware their benchmark record names ("Intel
Xeon, 2 threads"): that is a fact of the measurement, read from the record.

The phrases below are checked, case-insensitively, wherever a reader of the site meets text:

* the Markdown cells of every notebook under `nbs/` (chapters, experiments, report);
* the Markdown pages `nbs/*.md`;
* the comments of the `paper` profiles in `nbs/experiments/*.yml`, which the reproduction report shows (the
  comment lines right after `paper:`, read as `nbs/report.ipynb` reads them);
* the executed outputs of the built site, `_build/html/**/*.html` (generated tables and sentences), when the
  site has been built (`make book`); `$PSTN_BOOK_HTML` may name another built site.

A new phrase that should never appear goes into `PHRASES`; a phrase that catches a legitimate sentence should
be made more specific rather than removed (for instance "the issue's", because "the paper sidesteps the issue"
is about the subject).
"""
import html
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"

# Regular expressions, matched case-insensitively against single lines (Markdown) or whole outputs (HTML).
PHRASES = [
    r"\b2-core\b", r"\btwo[- ]core\b", r"\btwo cores\b",
    r"\bthis machine\b", r"\bthese machines\b", r"\bbusy (2-core |two-core )?machines?\b",
    r"\bthe build machine\b", r"\bthis computer\b", r"\bthis container\b",
    r"\bno web site\b", r"\bnot reachable\b", r"\boffline here\b", r"\bbuilt and tested on\b",
    r"\bthe issue's\b", r"\bthe issue (asks|says|wants|requires|demands|lists|states)\b",
    r"\bgoals? met\b", r"\bgoals? (is |was |were )?not met\b", r"\bspeed goal\b", r"\bour goal\b",
    r"\b\d+(\.\d+)?x goal\b",
    r"\bto be written\b", r"\bnot run here\b", r"\bonce someone\b",
    r"\bTODO\b", r"\bFIXME\b", r"\bTBD\b",
]
PATTERN = re.compile("|".join(f"(?:{p})" for p in PHRASES), re.IGNORECASE)


def hits(text: str) -> list[str]:
    return [m.group(0) for m in PATTERN.finditer(text)]


def markdown_lines():
    "(place, line) for every line of every Markdown cell under nbs/ and of every nbs/*.md page."
    for nb in sorted(NBS.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb.parts: continue
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] != "markdown": continue
            for j, line in enumerate("".join(cell["source"]).splitlines(), 1):
                yield f"{nb.relative_to(ROOT)} (cell {i}, line {j})", line
    for md in sorted(NBS.glob("*.md")):
        for j, line in enumerate(md.read_text().splitlines(), 1):
            yield f"{md.relative_to(ROOT)}:{j}", line


def paper_profile_comments():
    "(place, comment) for the comment lines right after `paper:` in each profile file, as the report shows them."
    for yml in sorted((NBS / "experiments").glob("*.yml")):
        grab = False
        for j, line in enumerate(yml.read_text().splitlines(), 1):
            if line.startswith("paper:"):
                grab = True; continue
            if grab and line.lstrip().startswith("#"): yield f"{yml.relative_to(ROOT)}:{j}", line
            elif grab: break


def built_site() -> Path | None:
    site = Path(os.environ.get("PSTN_BOOK_HTML") or ROOT / "_build" / "html")
    return site if site.is_dir() else None


def cell_outputs(page: str) -> list[str]:
    "The text of each executed output (`cell_output` container) of a built page."
    out, pos = [], 0
    opener = re.compile(r'<div class="cell_output[^"]*"[^>]*>')
    while (m := opener.search(page, pos)):
        depth, i = 1, m.end()
        for tag in re.finditer(r"<(/?)div\b[^>]*>", page[m.end():]):
            depth += -1 if tag.group(1) else 1
            if depth == 0:
                i = m.end() + tag.start(); break
        else:
            i = len(page)
        text = re.sub(r"<[^>]+>", " ", page[m.end():i])
        out.append(" ".join(html.unescape(text).split()))
        pos = i
    return out


def report(found: list[tuple[str, str, list[str]]]) -> str:
    return f"{len(found)} place(s) say something about the machine, the goals or the to-do state:\n" + \
        "\n".join(f"  {place}: {', '.join(map(repr, h))}: {text.strip()[:160]}" for place, text, h in found)


def test_the_patterns_catch_the_known_examples():
    for bad in ["on a busy 2-core machine", "no web site is reachable here", "The issue's goals:", "goal met: no",
                "| speedup | goal met |", "written (speed goal not met)", "CPAB, still to be written",
                "the GPU cell is not run here", "once someone runs it", "TODO: derive", "within the 3x goal",
                "it works offline here", "the two cores of this machine"]:
        assert hits(bad), bad
    for fine in ["The paper sidesteps the issue by freezing the classifier", "Intel(R) Xeon(R) (2 cores, 2 threads)",
                 "the run-to-run noise of the timings", "the accuracy goal of the integrator", "the busy cores",
                 "a machine without web access fails at once", "the file is written atomically"]:
        assert not hits(fine), fine


def test_markdown_cells_and_pages():
    found = [(place, line, h) for place, line in markdown_lines() if (h := hits(line))]
    assert not found, report(found)


def test_paper_profile_comments_shown_in_the_report():
    found = [(place, line, h) for place, line in paper_profile_comments() if (h := hits(line))]
    assert not found, report(found)


def test_built_site_outputs():
    site = built_site()
    if site is None:
        pytest.skip(f"no built site at {ROOT / '_build' / 'html'} (run `make book`, or set $PSTN_BOOK_HTML): "
                    "the executed outputs were not checked")
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)
    assert pages, f"no HTML pages under {site}"
    found = []
    for page in pages:
        for k, text in enumerate(cell_outputs(page.read_text())):
            if h := hits(text):
                found.append((f"{page.relative_to(site)} (output {k})", text[max(0, text.lower().find(h[0].lower()) - 60):], h))
    assert not found, report(found)


def test_every_cited_work_is_in_the_bibliography():
    bib = (ROOT / "references.bib").read_text()
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", bib, flags=re.M))
    cited = {}
    for path in sorted(NBS.rglob("*.ipynb")) + sorted(NBS.rglob("*.md")):
        for m in re.finditer(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text()):
            for key in m.group(1).split(","):
                cited.setdefault(key.strip(), path.relative_to(ROOT))
    assert cited, "no citation found: the pattern is wrong"
    missing = {k: str(p) for k, p in cited.items() if k not in keys}
    assert not missing, f"cited but not in references.bib: {missing}"
