"""notebooks/explore.ipynb: paired with its script, stored without outputs, and reproducing the metrics.

The notebook names no column of any data set (it reads the adapter's), so
these tests pass for a fork's adapter as they do for the example.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from src.pipeline import config

NOTEBOOK = config.ROOT / "notebooks" / "explore.ipynb"
SCRIPT = NOTEBOOK.with_suffix(".py")
TIMEOUT_S = 900


def cells(notebook) -> list[tuple[str, str, list]]:
    return [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in notebook.cells]


@pytest.mark.slow  # importing jupytext and nbformat takes seconds: they are imported here, not at collection
def test_notebook_and_its_script_hold_the_same_cells_and_no_outputs():
    import jupytext
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The script is what reviews read: a notebook edited without `jupytext --sync`
    # (the pre-commit hook runs it) would differ from it.
    assert cells(notebook) == cells(jupytext.read(SCRIPT)), "run `jupytext --sync notebooks/explore.py`"
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code), (
        "the committed notebook has outputs: nbstripout (pre-commit) strips them"
    )
    # Papermill's convention: the cell tagged "parameters" holds what a run may override.
    parameters = [cell.source for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "REV = " in parameters[0], parameters


@pytest.mark.slow
def test_the_kernel_is_this_environments_python():
    import nbformat
    from nbclient import NotebookClient

    # The kernel nbclient starts is ipykernel's "python3" from the venv that
    # requirements.lock built (jupyter_client runs it with the Python it is
    # installed in), so the notebook sees the pipeline's own pinned libraries.
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import sys, sklearn; print(sys.prefix); print(sklearn.__version__)")]
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    prefix, version = notebook.cells[0].outputs[0].text.split()
    assert Path(prefix).resolve() == config.VENV.resolve() == Path(sys.prefix).resolve()
    import sklearn

    assert version == sklearn.__version__


@pytest.mark.long
def test_notebook_reproduces_eval_metrics_exactly(reproduced):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(reproduced / "notebooks" / "explore.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(reproduced / "notebooks")}},
    )
    started = time.perf_counter()
    client.execute()
    print(f"notebook executed in {time.perf_counter() - started:.1f} s")
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    stdout = "".join(output.text for output in outputs if output.output_type == "stream")
    assert "identical to eval/metrics.json at HEAD" in stdout
    # The printed metrics themselves, against the file the evaluate stage wrote in the clone.
    printed = stdout[stdout.index("{\n") : stdout.rindex("}\n") + 1]
    assert json.loads(printed) == json.loads((reproduced / "eval" / "metrics.json").read_text(encoding="utf-8"))
