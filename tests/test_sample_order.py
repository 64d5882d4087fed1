"""The order of the S samples of B images, as 00_conventions states it, is the order the code uses.

The convention is read from the chapter's own text (the `samples` row of its summary table), turned into a
function row(s, b, S, B), and checked against `sample_theta`, `PSTN.views`, `PSTN.classify` and
`empty_fraction`. If the text and the code disagree (for example, the text promising image-major rows
`b*S + s` while the code stacks samples sample-major), these tests fail.
"""
import json
import re

import pytest
import torch
from torch import nn

from conftest import ROOT
from pstn.distributions import sample_theta
from pstn.families import get_family
from pstn.pstn import PSTN
from pstn.stn import empty_fraction

S, B, C, H = 3, 4, 1, 8


def _markdown(name: str) -> str:
    nb = json.loads((ROOT / "nbs" / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


@pytest.fixture(scope="module")
def row():
    "row(s, b) of the flattened S*B batch, as the conventions chapter states it."
    text = _markdown("00_conventions.ipynb")
    table = [l for l in text.splitlines() if l.startswith("| samples |")]
    assert len(table) == 1, "00_conventions: no single `samples` row in the summary table"
    found = re.findall(r"row `([sSbB*+ ]+)`", table[0])
    assert len(found) == 1, f"00_conventions: the `samples` row names no row formula: {table[0]!r}"
    formula = found[0]
    assert set(formula.replace(" ", "")) <= set("sSbB*+"), formula
    return lambda s, b: eval(formula, {}, {"s": s, "b": b, "S": S, "B": B})   # noqa: S307 - checked above


def test_the_formula_is_a_bijection(row):
    rows = sorted(row(s, b) for s in range(S) for b in range(B))
    assert rows == list(range(S * B))


def test_no_chapter_promises_another_order():
    "The chapters that describe the sample layout say the same thing as the code's docstrings."
    for name in ("00_conventions.ipynb", "06_distributions.ipynb", "07_elbo.ipynb", "09_pstn.ipynb"):
        text = _markdown(name) + (ROOT / "nbs" / name).read_text()
        assert "b*S + s" not in text and "image-major" not in text, name
    for path in (ROOT / "pstn").glob("*.py"):
        text = path.read_text()
        assert "b*S + s" not in text and "image-major" not in text, path.name


def test_sample_theta_rows(row):
    mu, beta = torch.randn(B, 2, dtype=torch.float64), torch.rand(B, 2, dtype=torch.float64) + 0.1
    theta = sample_theta(mu, 1.0, beta, S, generator=torch.Generator().manual_seed(0))
    assert theta.shape == (S, B, 2)
    flat = theta.reshape(S * B, 2)                                     # the flattening the models use
    for s in range(S):
        for b in range(B):
            assert torch.equal(flat[row(s, b)], theta[s, b])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    localiser = nn.Sequential(nn.Flatten(), nn.Linear(C * H * H, 5))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(C * H * H, 7))
    return PSTN(get_family("translation"), localiser, classifier, (C, H, H)).eval()


def test_pstn_views_and_classify_rows(model, row):
    torch.manual_seed(1)
    x = torch.rand(B, C, H, H)                                          # B different images
    theta = 0.3 * torch.randn(S, B, 2)                                  # S * B different shifts
    views = model.views(x, theta)
    assert views.shape == (S * B, C, H, H)
    log_probs = model.classify(x, theta, views)
    assert log_probs.shape == (S, B, 7)
    for s in range(S):
        for b in range(B):
            one = model.transform(x[b:b + 1], theta[s, b:b + 1])        # image b under its sample s, alone
            torch.testing.assert_close(views[row(s, b)], one[0], rtol=0, atol=1e-6)
            torch.testing.assert_close(log_probs[s, b], torch.log_softmax(model.net(one), -1)[0],
                                       rtol=0, atol=1e-5)


def test_empty_fraction_pairs_rows_with_their_image(row):
    """`empty_fraction` compares row row(s, b) of the views with image b. Images of very different brightness
    (1, 1e3, 1e6, 1e9) make a wrong pairing visible: a view that copies image b is far below the 1e-3 threshold
    of every brighter image."""
    x = torch.ones(B, C, H, H, dtype=torch.float64) * (1e3 ** torch.arange(B, dtype=torch.float64)).view(B, 1, 1, 1)
    views = torch.zeros(S * B, C, H, H, dtype=torch.float64)
    for s in range(S):
        for b in range(B):
            views[row(s, b)] = x[b]                                     # every view shows its image ...
    views[row(1, 2)] = 0                                                # ... but one
    assert float(empty_fraction(views, x)) == pytest.approx(1 / (S * B))
