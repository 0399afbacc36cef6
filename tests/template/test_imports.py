"""What importing a layer pulls in: the params schema and serving load no database library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from src.pipeline import config

# The source side's libraries: only gather, ingest and the source tools need them.
DATABASE_MODULES = ("sqlalchemy", "adbc_driver_manager", "adbc_driver_sqlite", "adbc_driver_postgresql", "psycopg")


def _loaded_after(statement: str, full: bool = False) -> set[str]:
    """The top-level modules (every module's full name, if `full`) a fresh interpreter holds after `statement`."""
    names = "sys.modules" if full else "{name.split('.')[0] for name in sys.modules}"
    probe = f"{statement}\nimport sys\nprint('\\n'.join(sorted({names})))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=config.ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


SQL_FREE_SOURCE = ("src.pipeline.source", "src.pipeline.source.moments")
# The service's raw rows (/predict/raw) import the adapter's INPUTS, the row-local derivation.
SERVING_INPUTS = (
    "from src.pipeline.params import load_params; from src.pipeline.adapter import load_inputs; "
    "load_inputs(load_params().dataset.adapter)"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "statement",
    [
        "import src.pipeline.params",
        "import src.pipeline.adapter",
        "import src.serving.serve, src.serving.predict, src.serving.contract",
        "from src.pipeline.params import load_params; load_params()",  # validating as_of parses it: no SQL
        SERVING_INPUTS,
    ],
)
def test_the_params_schema_and_serving_import_no_database_library(statement):
    loaded = _loaded_after(statement)
    assert not loaded & set(DATABASE_MODULES), f"{statement!r} imports {sorted(loaded & set(DATABASE_MODULES))}"


@pytest.mark.slow
def test_the_probe_sees_a_database_import():
    # The check above is only as good as the probe: gather does import SQLAlchemy.
    assert "sqlalchemy" in _loaded_after("import src.pipeline.gather")


@pytest.mark.slow
def test_serving_and_the_adapters_inputs_import_nothing_of_the_source_side():
    loaded = _loaded_after(f"import src.serving.serve\n{SERVING_INPUTS}", full=True)
    # moments.py (the time format; no SQL) is the params schema's, which serving reads: the one exception.
    source_side = sorted(
        name
        for name in loaded
        if name not in SQL_FREE_SOURCE
        and (name.startswith("src.pipeline.source") or name.split(".")[0] in DATABASE_MODULES)
    )
    assert not source_side, f"serving imports the source side: {source_side}"
    # And the probe sees it when it is there: the adapter itself declares the source tables.
    assert "src.pipeline.source.history" in _loaded_after(
        f"{SERVING_INPUTS}\nfrom src.pipeline.dataset import load_adapter; load_adapter(load_params())", full=True
    )
