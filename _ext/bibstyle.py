"""Sphinx extension for the pstn book: bibliography labels in the author-year style of the citations.

The text cites author-year (`bibtex_reference_style: author_year` in `_config.yml`: "Jaderberg et al., 2015"),
while pybtex's own styles label the bibliography `[JSZK15]` (alpha) or `[1]` (plain). This registers the
pybtex style `authoryear`: the `plain` style (sorted by author, year, title) with labels such as
`Schwöbel et al., 2022`, `Wang, 2018` or `Smith and Jones, 2020`, so that the bibliography reads like the
citations that point to it. Two works with the same label get `a`, `b`, ... after the year.
`nbs/bibliography.md` selects it with `:style: authoryear`.
"""
from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _last_name(person) -> str:
    "A person's last name(s) as plain text, LaTeX accents decoded (`Schw{\\\"o}bel` -> `Schwöbel`)."
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


class AuthorYearLabelStyle(BaseLabelStyle):
    "Labels `Author, year`, `Author and Other, year` or `Author et al., year`."

    def format_label(self, entry) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_last_name(p) for p in people]
        if not names: who = entry.key
        elif len(names) == 1: who = names[0]
        elif len(names) == 2: who = f"{names[0]} and {names[1]}"
        else: who = f"{names[0]} et al."
        year = entry.fields.get("year", "n.d.")
        return f"{who}, {year}"

    def format_labels(self, sorted_entries):
        labels = [self.format_label(e) for e in sorted_entries]
        count, seen = Counter(labels), Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label]]
                seen[label] += 1


class AuthorYearStyle(PlainStyle):
    "pybtex's `plain` style with `AuthorYearLabelStyle` labels."
    default_label_style = "authoryear"


def setup(app):
    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle, force=True)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
