"""One test per chapter notebook (and per page of the reproduction report): execute it with nbdev's test machinery (fastcore.test cells included).

Cells flagged with one of settings.ini's `tst_flags` (notest, slow, gpu) are skipped; set PSTN_TEST_FLAGS to a
space-separated list (e.g. "slow") to run those too. Experiment notebooks are run through the runner instead."""
import os
from pathlib import Path

import pytest
import nbdev.test as nbt  # imported as a module so that pytest does not collect nbdev's own test_nb

from conftest import ROOT, settings

NOTEBOOKS = sorted(p for pattern in ("*.ipynb", "report/*.ipynb") for p in (ROOT / "nbs").glob(pattern)
                   if not p.name.startswith(("_", ".")))


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb: Path):
    skip = settings()["tst_flags"].split()
    force = os.environ.get("PSTN_TEST_FLAGS", "").split()
    ok, seconds = nbt.test_nb(nb, skip_flags=skip, force_flags=force, showerr=True)
    assert ok, f"{nb.name} failed (see the traceback above)"
