"""What importing a layer pulls in: the params schema and serving load no database library."""
from __future__ import annotations

import subprocess
import sys

import pytest

from src.pipeline import config

# The source side's libraries: only gather, ingest and the source tools need them.
DATABASE_MODULES = ("sqlalchemy", "adbc_driver_manager", "adbc_driver_sqlite", "adbc_driver_postgresql", "psycopg")


def _loaded_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running `statement`."""
    probe = f"{statement}\nimport sys\nprint('\\n'.join(sorted({{name.split('.')[0] for name in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=config.ROOT, capture_output=True, text=True,
                            check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize("statement", [
    "import src.pipeline.params",
    "import src.pipeline.adapter",
    "import src.serving.serve, src.serving.predict, src.serving.contract",
    "from src.pipeline.params import load_params; load_params()",  # validating as_of parses it: no SQL
])
def test_the_params_schema_and_serving_import_no_database_library(statement):
    loaded = _loaded_after(statement)
    assert not loaded & set(DATABASE_MODULES), f"{statement!r} imports {sorted(loaded & set(DATABASE_MODULES))}"


def test_the_probe_sees_a_database_import():
    # The check above is only as good as the probe: gather does import SQLAlchemy.
    assert "sqlalchemy" in _loaded_after("import src.pipeline.gather")
