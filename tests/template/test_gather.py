"""The gather stage against the adapter's declared source: checks, typing, and the real source end to end."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from src.pipeline import config
from src.pipeline.gather import SourceError, check_source, gather, open_source, to_snapshot_table
from src.pipeline.history import TIME_FORMAT
from src.pipeline.params import as_of_timestamp
from tests.template import frames
from tests.template.frames import ADAPTER, PARAMS

BEFORE_ANY_DATA = "1900-01-01 00:00:00"


def _declared_copy(skip_table: str | None = None, skip_column: tuple[str, str] | None = None) -> sa.MetaData:
    """The adapter's source tables as plain columns, less one table or one column."""
    copy = sa.MetaData()
    for table in ADAPTER.source_tables.sorted_tables:
        if table.name == skip_table:
            continue
        columns = [sa.Column(c.name, c.type) for c in table.columns if (table.name, c.name) != skip_column]
        sa.Table(table.name, copy, *columns)
    return copy


def _sqlite(path: Path, metadata: sa.MetaData) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    return engine


def test_the_declared_source_passes_the_check(tmp_path):
    engine = _sqlite(tmp_path / "declared.sqlite", ADAPTER.source_tables)
    with engine.connect() as connection:
        check_source(connection, ADAPTER.source_tables)
    engine.dispose()


def test_missing_table_and_column_are_named(tmp_path):
    tables = ADAPTER.source_tables.sorted_tables
    first, last = tables[0], tables[-1]
    dropped = [c.name for c in last.columns][-1]
    if len(tables) > 1:
        metadata = _declared_copy(skip_table=first.name, skip_column=(last.name, dropped))
        expected = [f"table {first.name!r} is missing", f"table {last.name!r} lacks columns [{dropped!r}]"]
    else:
        metadata = _declared_copy(skip_column=(last.name, dropped))
        expected = [f"table {last.name!r} lacks columns [{dropped!r}]"]
    engine = _sqlite(tmp_path / "partial.sqlite", metadata)
    with engine.connect() as connection, pytest.raises(SourceError) as error:
        check_source(connection, ADAPTER.source_tables)
    engine.dispose()
    for text in expected:
        assert text in str(error.value)
    # and gather stops before writing anything
    with pytest.raises(SourceError, match="does not match the snapshot query"):
        gather(ADAPTER, f"sqlite:///{tmp_path / 'partial.sqlite'}", "2020-01-01 00:00:00", 10,
               tmp_path / "snap.parquet")
    assert not list(tmp_path.glob("*snap*"))


def _driver_rows(table: pa.Table) -> tuple[list[str], list[tuple]]:
    """A snapshot as a database driver returns it: Python values, timestamps as the source's UTC text,
    columns in the query's order (here reversed, so the schema's order must be restored)."""
    names = list(reversed(table.column_names))
    columns = []
    for name in names:
        values = table.column(name).to_pylist()
        if pa.types.is_timestamp(table.schema.field(name).type):
            values = [None if v is None else v.astimezone(dt.UTC).strftime(TIME_FORMAT) for v in values]
        columns.append(values)
    return names, list(zip(*columns, strict=True))


def test_driver_rows_become_the_declared_schema():
    expected = frames.snapshot_table(rows=30)
    names, rows = _driver_rows(expected)
    table = to_snapshot_table(names, rows, ADAPTER.snapshot_schema)
    assert table.schema == ADAPTER.snapshot_schema
    assert table.equals(expected)
    empty = to_snapshot_table(names, [], ADAPTER.snapshot_schema)
    assert empty.num_rows == 0 and empty.schema == ADAPTER.snapshot_schema


def test_values_that_do_not_fit_are_refused_not_truncated():
    names, rows = _driver_rows(frames.snapshot_table(rows=3))
    position = names.index(ADAPTER.id)
    broken = [tuple(1.5 if i == position and r == 1 else v for i, v in enumerate(row)) for r, row in enumerate(rows)]
    with pytest.raises(pa.ArrowInvalid):
        to_snapshot_table(names, broken, ADAPTER.snapshot_schema)
    kept = [n for n in names if n != ADAPTER.id]
    with pytest.raises(SourceError, match=rf"returned no columns \['{ADAPTER.id}'\]"):
        to_snapshot_table(kept, [tuple(v for n, v in zip(names, row, strict=True) if n != ADAPTER.id) for row in rows],
                          ADAPTER.snapshot_schema)


def test_missing_database_is_named_and_never_created(tmp_path):
    with pytest.raises(SourceError, match="source database not found.*make source"):
        open_source(f"sqlite:///{tmp_path / 'absent.sqlite'}")
    with pytest.raises(SourceError, match="source database not found"):
        gather(ADAPTER, f"sqlite:///{tmp_path / 'absent.sqlite'}", "2020-01-01 00:00:00", 10, tmp_path / "x.parquet")
    assert not (tmp_path / "absent.sqlite").exists()  # never created as an empty database
    assert not (tmp_path / "x.parquet").exists()


def test_unreachable_server_is_a_clear_error(tmp_path):
    # A PostgreSQL URL for a port nothing listens on: no driver or no server,
    # either way a SourceError without the password, not a traceback.
    with pytest.raises(SourceError) as error:
        gather(ADAPTER, "postgresql://user:secret@127.0.0.1:9/none", "2020-01-01 00:00:00", 10,
               tmp_path / "x.parquet")
    assert "secret" not in str(error.value)
    assert not (tmp_path / "x.parquet").exists()


@pytest.fixture(scope="module")
def source_url() -> str:
    if not os.environ.get(config.SOURCE_URL_ENV) and not config.SOURCE_DB.exists():
        pytest.fail(f"{config.SOURCE_DB} missing: run the tests through `make test`")
    return config.source_url()


@pytest.fixture(scope="module")
def snapshot(source_url, tmp_path_factory) -> Path:
    """The real source's snapshot at the committed as_of, as the stage writes it."""
    output = tmp_path_factory.mktemp("gather") / "snapshot.parquet"
    gather(ADAPTER, source_url, as_of_timestamp(PARAMS.gather.as_of), PARAMS.gather.chunk_rows, output)
    return output


@pytest.mark.slow
def test_the_real_snapshot_has_the_declared_schema_and_is_ordered_by_id(snapshot):
    assert pq.read_schema(snapshot).remove_metadata() == ADAPTER.snapshot_schema
    ids = pq.read_table(snapshot, columns=[ADAPTER.id]).column(0).to_numpy()
    assert len(ids) > 0
    assert (ids[1:] > ids[:-1]).all()  # unique and ascending: ORDER BY the id, whatever the physical order


@pytest.mark.slow
def test_the_real_snapshot_is_the_same_bytes_whatever_the_row_order(snapshot, source_url, tmp_path):
    # SQLite's reverse_unordered_selects hands any code that leans on an
    # unspecified order another order; the bytes must not move.
    again = tmp_path / "again.parquet"
    gather(ADAPTER, source_url, as_of_timestamp(PARAMS.gather.as_of), PARAMS.gather.chunk_rows, again,
           scramble=True)
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    assert digest(again) == digest(snapshot)


@pytest.mark.slow
def test_chunk_size_changes_no_row(snapshot, source_url, tmp_path):
    other = tmp_path / "other.parquet"
    gather(ADAPTER, source_url, as_of_timestamp(PARAMS.gather.as_of), 7919, other)
    assert pq.read_table(other).equals(pq.read_table(snapshot))


def test_as_of_before_any_data_fails_and_leaves_nothing(source_url, tmp_path):
    output = tmp_path / "snap.parquet"
    with pytest.raises(SourceError, match="empty"):
        gather(ADAPTER, source_url, BEFORE_ANY_DATA, PARAMS.gather.chunk_rows, output)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary
