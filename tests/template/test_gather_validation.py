"""Source values checked at gather: on a tiny copy of the real source, one bad value at a time.

The tiny source holds the adapter's declared tables (plain columns of the
declared types, no constraints, so that a NULL id can be written), with the
entity table cut to its first few entities. Each case writes one bad value
into every version of one entity, so whichever version the point-in-time
query picks carries it, and gather must stop naming the table, column, entity
id and value, leaving any earlier snapshot as it was.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from src.pipeline import config
from src.pipeline.adapter import Domain
from src.pipeline.gather import gather
from src.pipeline.source.history import RECORDED_AT
from src.pipeline.source.readers import read_arrow, rows_to_arrow
from src.pipeline.source.url import SourceError, parse_url
from src.pipeline.source.validate import SourceValueError, to_snapshot
from tests.conftest import require_embedded_source
from tests.template.frames import ADAPTER, PARAMS

ENTITIES = 40
AS_OF = PARAMS.gather.moment
ENTITY_TABLE = ADAPTER.entity_table


def plain_tables() -> sa.MetaData:
    """The adapter's source tables: declared names and types, no keys or constraints."""
    plain = sa.MetaData()
    for table in ADAPTER.source_tables.sorted_tables:
        sa.Table(table.name, plain, *(sa.Column(column.name, column.type) for column in table.columns))
    return plain


def build_tiny_source(path: Path, entities: int = ENTITIES) -> Path:
    """The real source's declared tables, the entity table cut to its first `entities` ids."""
    require_embedded_source()
    tables = plain_tables()
    engine = sa.create_engine(f"sqlite:///{path}")
    tables.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("ATTACH DATABASE ? AS real", (f"{config.SOURCE_DB.as_uri()}?mode=ro",))
        for table in tables.sorted_tables:
            names = ", ".join(column.name for column in table.columns)
            where = ""
            if table.name == ENTITY_TABLE:
                where = (
                    f" WHERE {ADAPTER.id} IN (SELECT DISTINCT {ADAPTER.id} FROM real.{table.name}"
                    f" WHERE {RECORDED_AT} <= ? ORDER BY {ADAPTER.id} LIMIT {entities})"
                )
            connection.execute(
                f"INSERT INTO {table.name} ({names}) SELECT {names} FROM real.{table.name}{where}",
                (AS_OF,) if where else (),
            )
        connection.commit()
        connection.execute("DETACH DATABASE real")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_source(tmp_path_factory.mktemp("tiny") / "source.sqlite")


@pytest.fixture(scope="module")
def tiny_snapshot(tiny, tmp_path_factory) -> pa.Table:
    output = tmp_path_factory.mktemp("tiny-snapshot") / "snapshot.parquet"
    gather(ADAPTER, f"sqlite:///{tiny}", AS_OF, PARAMS.gather.chunk_rows, output)
    return pq.read_table(output)


def _victim(snapshot: pa.Table) -> int:
    """An entity in the middle of the tiny snapshot: the message must name this one, not the first."""
    ids = snapshot.column(ADAPTER.id).to_pylist()
    assert len(ids) >= 3, "the tiny source must give a few snapshot rows"
    return ids[len(ids) // 2]


def _spoiled(tiny: Path, tmp_path: Path, column: str, value, entity: int) -> Path:
    """A copy of the tiny source with `value` in `column` of every version of `entity`."""
    path = tmp_path / "spoiled.sqlite"
    shutil.copy(tiny, path)
    with sqlite3.connect(path) as connection:
        changed = connection.execute(
            f"UPDATE {ENTITY_TABLE} SET {column} = ? WHERE {ADAPTER.id} = ?", (value, entity)
        ).rowcount
        connection.commit()
    assert changed >= 1
    return path


def _refused(source: Path, tmp_path: Path, **kwargs) -> str:
    """gather's message for `source`; the snapshot written before it must survive byte for byte."""
    output = tmp_path / "out" / "snapshot.parquet"
    output.parent.mkdir(exist_ok=True)
    output.write_bytes(b"the previous snapshot")
    with pytest.raises(SourceValueError) as error:
        gather(
            ADAPTER, f"sqlite:///{source}", AS_OF, kwargs.pop("chunk_rows", PARAMS.gather.chunk_rows), output, **kwargs
        )
    assert output.read_bytes() == b"the previous snapshot"
    assert sorted(p.name for p in output.parent.iterdir()) == ["snapshot.parquet"]  # no temporary left
    message = str(error.value)
    assert "\n" not in message
    return message


def _entity_columns(predicate) -> list[str]:
    """Snapshot columns read straight from the entity table's column of the same name."""
    table = ADAPTER.source_tables.tables[ENTITY_TABLE]
    return [
        field.name
        for field in ADAPTER.snapshot_schema
        if field.name != ADAPTER.id
        and field.name in table.c
        and ADAPTER.source_of(field.name) == f"{ENTITY_TABLE}.{field.name}"
        and predicate(field)
    ]


def _assert_names(message: str, column: str, entity, value: str) -> None:
    assert f"table {ENTITY_TABLE!r}" in message, message
    assert f"column {column!r}" in message, message
    assert f"{ADAPTER.id}={entity}" in message, message
    assert value in message, message


NUMERIC = _entity_columns(lambda f: pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
INTEGERS = [name for name in NUMERIC if pa.types.is_integer(ADAPTER.snapshot_schema.field(name).type)]
FLOATS = [name for name in NUMERIC if pa.types.is_floating(ADAPTER.snapshot_schema.field(name).type)]
TIMESTAMPS = [name for name in _entity_columns(lambda f: pa.types.is_timestamp(f.type)) if name != RECORDED_AT]
BOUNDED = [
    (name, side)
    for name in _entity_columns(lambda f: True)
    for side in ("low", "high")
    if getattr(ADAPTER.snapshot_domains.get(name, Domain()), side) is not None
]
REQUIRED = [
    name
    for name in _entity_columns(lambda f: True)
    if ADAPTER.snapshot_domains.get(name, Domain()).required and name != RECORDED_AT
]
LISTED = [name for name in _entity_columns(lambda f: True) if ADAPTER.snapshot_domains.get(name, Domain()).values]


def test_the_real_values_pass(tiny_snapshot):
    # Sanity: the tiny source itself is clean, so every refusal below is the bad value's doing.
    assert tiny_snapshot.schema == ADAPTER.snapshot_schema and tiny_snapshot.num_rows >= 3


@pytest.mark.slow
@pytest.mark.parametrize("column", INTEGERS[:1] + FLOATS[-1:])
def test_text_in_a_numeric_column_is_named(tiny, tiny_snapshot, tmp_path, column):
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, column, "abc", entity), tmp_path)
    _assert_names(message, column, entity, "'abc'")
    assert "text in a numeric column" in message


@pytest.mark.slow
@pytest.mark.parametrize("column, side", BOUNDED)
def test_a_value_outside_its_declared_domain_is_named(tiny, tiny_snapshot, tmp_path, column, side):
    domain = ADAPTER.snapshot_domains[column]
    bad = domain.low - 1 if side == "low" else domain.high + 1
    kind = ADAPTER.snapshot_schema.field(column).type
    bad = int(bad) if pa.types.is_integer(kind) else float(bad)
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, column, bad, entity), tmp_path)
    _assert_names(message, column, entity, repr(bad))
    assert "outside the allowed range" in message


@pytest.mark.slow
@pytest.mark.parametrize("column", INTEGERS[:2])
def test_a_number_that_does_not_fit_the_type_is_refused_not_truncated(tiny, tiny_snapshot, tmp_path, column):
    entity = _victim(tiny_snapshot)
    for bad in (2.5, 10**12):  # a fraction; far beyond any declared integer width but int64
        message = _refused(_spoiled(tiny, tmp_path, column, bad, entity), tmp_path)
        _assert_names(message, column, entity, repr(bad))


@pytest.mark.parametrize("column", FLOATS[:1])
def test_an_infinite_float_is_refused(tiny, tiny_snapshot, tmp_path, column):
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, column, math.inf, entity), tmp_path)
    _assert_names(message, column, entity, "inf")
    assert "not a finite number" in message


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["2013-13-45 99:00:00", "2013-1-1 5:00:00", "2013-02-30 10:00:00", "yesterday"])
def test_a_malformed_timestamp_is_named(tiny, tiny_snapshot, tmp_path, bad):
    if not TIMESTAMPS:
        pytest.skip("the adapter's entity table has no timestamp column besides recorded_at")
    column = TIMESTAMPS[0]
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, column, bad, entity), tmp_path)
    _assert_names(message, column, entity, repr(bad))


def test_a_null_id_is_named(tiny, tiny_snapshot, tmp_path):
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, ADAPTER.id, None, entity), tmp_path)
    _assert_names(message, ADAPTER.id, "NULL", "NULL")
    # The history contract check (gather.check_history) meets it first, before any value is read.
    assert "breaks the history contract" in message


@pytest.mark.slow
@pytest.mark.parametrize("column", REQUIRED[:3])
def test_a_null_where_the_adapter_requires_a_value_is_named(tiny, tiny_snapshot, tmp_path, column):
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, column, None, entity), tmp_path)
    _assert_names(message, column, entity, "NULL")


@pytest.mark.parametrize("column", LISTED)
def test_a_text_not_in_the_declared_list_is_named(tiny, tiny_snapshot, tmp_path, column):
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, column, "no such value", entity), tmp_path)
    _assert_names(message, column, entity, "'no such value'")


@pytest.mark.slow
def test_the_row_path_names_the_same_value(tiny, tiny_snapshot, tmp_path):
    # The SQLAlchemy path (any other database) checks through the same code.
    column = NUMERIC[0]
    entity = _victim(tiny_snapshot)
    message = _refused(_spoiled(tiny, tmp_path, column, "abc", entity), tmp_path, arrow_native=False)
    _assert_names(message, column, entity, "'abc'")


@pytest.mark.slow
@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_no_chunk_boundary_changes_a_type_or_a_byte(tiny, tiny_snapshot, tmp_path, chunk_rows):
    # The SQLite driver types a column from its first batch: with tiny chunks a
    # column is NULL throughout one of them, or whole numbers come before
    # fractions. Either the Arrow path or, after it gives up, the row path must
    # give the bytes one big chunk gives, and row groups stay chunk_rows long.
    reference, native = tmp_path / "reference.parquet", tmp_path / "native.parquet"
    gather(ADAPTER, f"sqlite:///{tiny}", AS_OF, chunk_rows, reference, arrow_native=False)
    gather(ADAPTER, f"sqlite:///{tiny}", AS_OF, chunk_rows, native)
    assert native.read_bytes() == reference.read_bytes()
    metadata = pq.ParquetFile(native).metadata
    assert {metadata.row_group(i).num_rows for i in range(metadata.num_row_groups - 1)} <= {chunk_rows}
    assert pq.read_table(native).equals(tiny_snapshot)


@pytest.mark.slow
def test_a_column_typed_from_its_first_batch_falls_back_to_rows(tiny, tiny_snapshot, tmp_path, capsys):
    # A float column NULL in the first chunk: the driver guesses int64 and then
    # meets a float. The snapshot is still the same bytes (read row by row), and the run says so.
    if not FLOATS:
        pytest.skip("no float column in the entity table")
    column = FLOATS[0]
    first = tiny_snapshot.column(ADAPTER.id)[0].as_py()
    source = _spoiled(tiny, tmp_path, column, None, first)
    with sqlite3.connect(source) as connection:  # a fraction further on, so the later chunks carry floats
        connection.execute(
            f"UPDATE {ENTITY_TABLE} SET {column} = 0.5 + abs({ADAPTER.id} % 7) WHERE {ADAPTER.id} <> ?", (first,)
        )
        connection.commit()
    native, rows, whole = (tmp_path / f"{name}.parquet" for name in ("native", "rows", "whole"))
    gather(ADAPTER, f"sqlite:///{source}", AS_OF, 1, native)
    assert "reading row by row instead" in capsys.readouterr().out
    gather(ADAPTER, f"sqlite:///{source}", AS_OF, 1, rows, arrow_native=False)
    assert native.read_bytes() == rows.read_bytes()
    gather(ADAPTER, f"sqlite:///{source}", AS_OF, 1000, whole)  # one chunk: nothing to guess wrong
    assert "row by row" not in capsys.readouterr().out
    assert pq.read_table(native).equals(pq.read_table(whole))
    assert pq.read_table(native).column(column).null_count == 1


def test_an_unordered_snapshot_query_is_refused(tiny, tmp_path):
    # A query without its final ORDER BY gives, under the scramble, ids in reverse:
    # gather refuses instead of writing another order.
    query = ADAPTER.snapshot_query.rstrip().rsplit("ORDER BY", 1)[0]
    unordered = dataclasses.replace(ADAPTER, snapshot_query=query)
    with pytest.raises(SourceError, match="not unique and ascending"):
        gather(unordered, f"sqlite:///{tiny}", AS_OF, 1000, tmp_path / "x.parquet", scramble=True)
    assert not list(tmp_path.iterdir())


def test_to_snapshot_names_a_missing_column():
    chunk = pa.table({ADAPTER.id: pa.array([1, 2])})
    with pytest.raises(SourceValueError, match="returned no columns"):
        to_snapshot(chunk, ADAPTER)


def test_read_arrow_yields_the_declared_schema(tiny):
    tables = list(read_arrow(parse_url(f"sqlite:///{tiny}"), ADAPTER, AS_OF, 5))
    assert tables and all(table.schema == ADAPTER.snapshot_schema for table in tables)


@pytest.mark.slow
def test_the_stage_stops_with_one_line_and_no_traceback(tiny, tiny_snapshot, tmp_path):
    # The real entry point, `python -m src.pipeline.gather`, in a copy of the
    # project's code and params (so the checkout's own snapshot is never at stake).
    column = NUMERIC[0]
    entity = _victim(tiny_snapshot)
    source = _spoiled(tiny, tmp_path, column, "abc", entity)
    project = tmp_path / "project"
    shutil.copytree(config.ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(config.PARAMS_FILE, project / config.PARAMS_FILE.name)
    snapshot = project / config.SNAPSHOT.relative_to(config.ROOT)
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"the previous snapshot")
    env = {"PATH": str(Path(sys.executable).parent), config.SOURCE_URL_ENV: f"sqlite:///{source}"}
    result = subprocess.run(
        [sys.executable, "-m", "src.pipeline.gather"], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gather: error: "), result.stderr
    _assert_names(lines[0], column, entity, "'abc'")
    assert "Traceback" not in result.stderr
    assert snapshot.read_bytes() == b"the previous snapshot"
    assert sorted(p.name for p in snapshot.parent.iterdir()) == [snapshot.name]


def test_exact_decimals_become_the_declared_numbers():
    # A row driver's Decimal values (PostgreSQL NUMERIC through SQLAlchemy) are
    # parsed from their digits, as the ADBC driver's NUMERIC text is: both paths
    # give the same numbers, and a fraction in an integer column is still refused.
    integer = next(
        field for field in ADAPTER.snapshot_schema if pa.types.is_integer(field.type) and field.name != ADAPTER.id
    )
    schema = pa.schema([ADAPTER.snapshot_schema.field(ADAPTER.id), integer, ("ratio", pa.float64())])
    adapter = dataclasses.replace(ADAPTER, snapshot_schema=schema, snapshot_domains={})
    rows = [
        (decimal.Decimal("1"), decimal.Decimal("3.000"), decimal.Decimal("0.1")),
        (decimal.Decimal("2"), decimal.Decimal("4"), decimal.Decimal("1E-7")),
    ]
    table = to_snapshot(rows_to_arrow(schema.names, rows, adapter), adapter)
    assert table.to_pylist() == [
        {ADAPTER.id: 1, integer.name: 3, "ratio": 0.1},
        {ADAPTER.id: 2, integer.name: 4, "ratio": 1e-7},
    ]
    rows[1] = (decimal.Decimal("2"), decimal.Decimal("4.5"), decimal.Decimal("0"))
    with pytest.raises(SourceValueError, match=f"column '{integer.name}', {ADAPTER.id}=2: 4.5 does not fit"):
        to_snapshot(rows_to_arrow(schema.names, rows, adapter), adapter)
