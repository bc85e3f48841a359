"""The notebooks run top to bottom on phantoms (quick settings), executed with nbclient."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_present_and_stripped():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_privacy_audit.ipynb", "03_lora_and_dp.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs in git"


def test_committed_notebooks_equal_what_the_build_script_makes():
    """notebooks/_build.py holds the cell sources; the committed .ipynb files must be its output
    (run `python notebooks/_build.py` after editing it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_build", NOTEBOOKS[0].parent / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    built = build.notebooks()
    assert sorted(f"{name}.ipynb" for name in built) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        committed = [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]
        expected = [(c.cell_type, c.source) for c in built[path.stem].cells]
        assert committed == expected, f"{path.name} differs from notebooks/_build.py; run `python notebooks/_build.py`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSYNTH_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend turns figures into PNG outputs
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ})
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert images, "a notebook should show its results as pictures"
