"""The notebooks: paired .py/.ipynb in sync, no outputs stored, papermill parameters."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from skinlib.pipeline import ALL_PAGES, EXPERIMENTS

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PAIRS = sorted(NOTEBOOKS.glob("*.py"))


def test_one_notebook_per_page():
    assert sorted(p.stem for p in PAIRS) == sorted(ALL_PAGES)
    assert set(EXPERIMENTS) <= {p.stem for p in PAIRS}


@pytest.mark.parametrize("script", PAIRS, ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(script):
    ipynb = script.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} missing: run `make notebooks`"
    from_py = jupytext.read(script)
    stored = nbformat.read(ipynb, as_version=4)
    assert [(c.cell_type, c.source) for c in from_py.cells] == [(c.cell_type, c.source) for c in stored.cells], (
        f"{script.name} and {ipynb.name} differ: run `jupytext --sync notebooks/{script.name}`")
    for cell in stored.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{ipynb.name} stores outputs"
    assert stored.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("script", PAIRS, ids=lambda p: p.stem)
def test_parameters_cell_names_the_profile(script):
    nb = jupytext.read(script)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{script.name} needs exactly one cell tagged 'parameters'"
    assert 'profile = "default"' in params[0].source
    assert "results_dir = None" in params[0].source and "data_dir = None" in params[0].source


@pytest.mark.parametrize("script", PAIRS, ids=lambda p: p.stem)
def test_notebook_opens_with_a_title_and_what_it_asks(script):
    first = jupytext.read(script).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
