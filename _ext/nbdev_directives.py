"""Sphinx extension for the pstn book: make nbdev's `#|` cell directives mean something to myst-nb.

myst-nb understands cell *tags* (`remove-cell`, `remove-input`, ...), not nbdev's `#| hide` comments. On
`source-read` (before myst-nb parses and executes a notebook) this rewrites every code cell:

* leading `#|` directive lines are removed from the source, so they never reach the HTML;
* `hide`, `default_exp`, `include: false` -> tag `remove-cell` (the cell still runs, it is just not shown);
* `echo: false`, `hide_input` -> `remove-input`;  `output: false` -> `remove-output`;
* `code-fold: true` -> `hide-input` (the code is collapsed behind a "show code" toggle, as Quarto folds it);
* `eval: false` -> `skip-execution`;  `gpu` -> `skip-execution` when no GPU is visible.

It also removes horizontal rules that end up *inside* a cell's output (nbdev's `show_doc` starts its Markdown
with `---`): docutils allows a transition only between sections and stops the build on a nested one.

Experiment notebooks (`nbs/experiments/*.ipynb`) are shown, not executed: the book inserts after their first
Markdown cell a section "Published results", written by `pstn.report.page_markdown` from `results/`: each published
profile's key numbers, provenance and figures, linked to the experiment's section of the reproduction report
(label `report-<experiment>`). A profile published later appears at the next build.

The notebook files themselves are not touched.
"""
import json
from pathlib import Path

from docutils import nodes
from docutils.transforms import Transform

TAGS = {"hide": "remove-cell", "default_exp": "remove-cell", "include: false": "remove-cell",
        "echo: false": "remove-input", "hide_input": "remove-input", "output: false": "remove-output",
        "eval: false": "skip-execution", "code-fold: true": "hide-input"}


def _directives(lines):
    "Split a cell's lines into (directives, rest): directives are the leading `#|` lines (blank lines skipped)."
    found, i = [], 0
    while i < len(lines) and (lines[i].lstrip().startswith("#|") or not lines[i].strip()):
        if lines[i].strip(): found.append(lines[i].strip()[2:].strip().lower())
        i += 1
    rest = [l for l in lines[i:] if not l.lstrip().startswith("#|")]
    return found, rest


def _gpu_visible():
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch means no GPU
        return False


def convert_notebook(text, gpu=None):
    "Return the notebook JSON `text` with nbdev directives turned into myst-nb tags."
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code": continue
        src = cell.get("source", "")
        lines = (src if isinstance(src, str) else "".join(src)).splitlines()
        found, rest = _directives(lines)
        if not found: continue
        tags = set(cell.setdefault("metadata", {}).get("tags", []))
        for d in found:
            key = d.split(":")[0] if d.split(":")[0] in ("default_exp",) else d
            key = key.split()[0] if key.split() and key.split()[0] in ("hide", "default_exp", "hide_input") else key
            if key in TAGS: tags.add(TAGS[key])
            if key == "gpu" and not (_gpu_visible() if gpu is None else gpu): tags.add("skip-execution")
        if not "".join(rest).strip(): tags.add("remove-cell")
        cell["source"] = "\n".join(rest)
        cell["metadata"]["tags"] = sorted(tags)
    return json.dumps(nb, indent=1)


def add_published_results(text, experiment, results, to_results="../../results"):
    """Return the notebook JSON `text` with a Markdown cell of `experiment`'s published results (from the folder
    `results`) inserted after its first Markdown cell."""
    from pstn.report import page_markdown
    nb = json.loads(text)
    md = page_markdown(experiment, to_results, report_label=f"report-{experiment}", results=results)
    first = next((i for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "markdown"), -1)
    nb["cells"].insert(first + 1, {"cell_type": "markdown", "id": "published-results", "metadata": {}, "source": md})
    return json.dumps(nb, indent=1)


def _on_source_read(app, docname, source):
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".ipynb": return
    source[0] = convert_notebook(source[0])
    if path.parent.name == "experiments" and (Path(app.srcdir) / "results").is_dir():
        source[0] = add_published_results(source[0], path.stem, Path(app.srcdir) / "results")


class DropNestedTransitions(Transform):
    "Remove transitions (horizontal rules) that are not direct children of the document or of a section."
    default_priority = 820          # before docutils' own Transitions check (830)

    def apply(self):
        for node in list(self.document.findall(nodes.transition)):
            if not isinstance(node.parent, (nodes.document, nodes.section)):
                node.parent.remove(node)


def setup(app):
    app.connect("source-read", _on_source_read)
    app.add_transform(DropNestedTransitions)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
