"""The gather stage against the adapter's declared source: checks, typing, and the real source end to end."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from src.pipeline import config
from src.pipeline.gather import gather, write_snapshot
from src.pipeline.source.moments import TIME_FORMAT
from src.pipeline.source.readers import arrow_connection, bind, check_source, open_source, rows_to_arrow
from src.pipeline.source.url import SourceError, parse_url
from src.pipeline.source.validate import SourceValueError, to_snapshot
from tests.conftest import require_source
from tests.template import frames
from tests.template.frames import ADAPTER, PARAMS
from tests.template.test_gather_validation import build_tiny_source

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


def _sqlite(path: Path, metadata: sa.MetaData) -> str:
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    return f"sqlite:///{path}"


def _present(metadata: sa.MetaData) -> dict[str, list[str]]:
    return {table.name: [column.name for column in table.columns] for table in metadata.sorted_tables}


def test_the_declared_source_passes_the_check(tmp_path):
    check_source(_present(ADAPTER.source_tables), ADAPTER.source_tables)
    # and a real empty source of the declared tables gets past the check on both read paths
    url = _sqlite(tmp_path / "declared.sqlite", ADAPTER.source_tables)
    for arrow_native in (True, False):
        with pytest.raises(SourceError, match="is empty"):
            gather(ADAPTER, url, "2020-01-01 00:00:00", 10, tmp_path / "snap.parquet", arrow_native=arrow_native)


@pytest.mark.parametrize("arrow_native", [True, False])
def test_missing_table_and_column_are_named(tmp_path, arrow_native):
    tables = ADAPTER.source_tables.sorted_tables
    first, last = tables[0], tables[-1]
    dropped = [c.name for c in last.columns][-1]
    if len(tables) > 1:
        metadata = _declared_copy(skip_table=first.name, skip_column=(last.name, dropped))
        expected = [f"table {first.name!r} is missing", f"table {last.name!r} lacks columns [{dropped!r}]"]
    else:
        metadata = _declared_copy(skip_column=(last.name, dropped))
        expected = [f"table {last.name!r} lacks columns [{dropped!r}]"]
    with pytest.raises(SourceError) as pure:
        check_source(_present(metadata), ADAPTER.source_tables)
    # gather reads the source's own catalog the same way, and stops before writing anything
    url = _sqlite(tmp_path / "partial.sqlite", metadata)
    with pytest.raises(SourceError, match="does not match the snapshot query") as error:
        gather(ADAPTER, url, "2020-01-01 00:00:00", 10, tmp_path / "snap.parquet", arrow_native=arrow_native)
    for text in expected:
        assert text in str(pure.value) and text in str(error.value)
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


# Tiny snapshots are random values of the declared types, not of the declared
# domains: these tests are about types.
TYPES_ONLY = dataclasses.replace(ADAPTER, snapshot_domains={})


def test_driver_rows_become_the_declared_schema():
    expected = frames.snapshot_table(rows=30)
    names, rows = _driver_rows(expected)
    table = to_snapshot(rows_to_arrow(names, rows, TYPES_ONLY), TYPES_ONLY)
    assert table.schema == ADAPTER.snapshot_schema
    assert table.equals(expected)


def test_values_that_do_not_fit_are_refused_not_truncated():
    names, rows = _driver_rows(frames.snapshot_table(rows=3))
    position = names.index(ADAPTER.id)
    broken = [tuple(1.5 if i == position and r == 1 else v for i, v in enumerate(row)) for r, row in enumerate(rows)]
    with pytest.raises(SourceValueError, match=f"{ADAPTER.id}=1.5: 1.5 does not fit"):
        to_snapshot(rows_to_arrow(names, broken, TYPES_ONLY), TYPES_ONLY)
    kept = [n for n in names if n != ADAPTER.id]
    with pytest.raises(SourceValueError, match=rf"returned no columns \['{ADAPTER.id}'\]"):
        to_snapshot(
            rows_to_arrow(
                kept, [tuple(v for n, v in zip(names, row, strict=True) if n != ADAPTER.id) for row in rows], ADAPTER
            ),
            ADAPTER,
        )


def test_row_groups_are_chunk_rows_whatever_the_driver_delivered(tmp_path):
    table = frames.snapshot_table(rows=10)
    pieces = [table.slice(0, 3), table.slice(3, 0), table.slice(3, 6), table.slice(9, 1)]
    output = tmp_path / "snapshot.parquet"
    assert write_snapshot(iter(pieces), ADAPTER, "2013-01-01 00:00:00", 4, output) == 10
    written = pq.ParquetFile(output)
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [4, 4, 2]
    assert written.read().equals(table)


def test_missing_database_is_named_and_never_created(tmp_path):
    with pytest.raises(SourceError, match="source database not found.*make source"):
        open_source(parse_url(f"sqlite:///{tmp_path / 'absent.sqlite'}"))
    for arrow_native in (True, False):
        with pytest.raises(SourceError, match="source database not found"):
            gather(
                ADAPTER,
                f"sqlite:///{tmp_path / 'absent.sqlite'}",
                "2020-01-01 00:00:00",
                10,
                tmp_path / "x.parquet",
                arrow_native=arrow_native,
            )
    assert not (tmp_path / "absent.sqlite").exists()  # never created as an empty database
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("arrow_native", [True, False])
def test_unreachable_server_is_a_clear_error(tmp_path, arrow_native):
    # Port 1 on loopback: nothing listens, so the driver really connects and is
    # refused; the message says so, without the password.
    with pytest.raises(SourceError) as error:
        gather(
            ADAPTER,
            "postgresql://user:secret@127.0.0.1:1/none",
            "2020-01-01 00:00:00",
            10,
            tmp_path / "x.parquet",
            arrow_native=arrow_native,
        )
    message = str(error.value)
    assert "connection refused" in message.lower(), message
    assert "127.0.0.1" in message and "\n" not in message
    assert "secret" not in message
    assert not (tmp_path / "x.parquet").exists()


def test_the_read_only_source_is_never_written(tmp_path):
    url = _sqlite(tmp_path / "declared.sqlite", ADAPTER.source_tables)
    table = ADAPTER.source_tables.sorted_tables[0].name
    with (
        arrow_connection(parse_url(url)) as connection,
        connection.cursor() as cursor,
        pytest.raises(Exception, match="readonly"),
    ):
        cursor.execute(f"DELETE FROM {table}")


def test_bind_writes_each_backends_own_parameter_style():
    query = "SELECT x::int FROM t WHERE a <= :as_of AND b <= :as_of"
    sql, values = bind(query, "sqlite", {"as_of": "2020-01-01 00:00:00"})
    assert sql.count("?") == 2 and values == ("2020-01-01 00:00:00",) * 2
    sql, values = bind(query, "postgresql", {"as_of": "2020-01-01 00:00:00"})
    assert sql.count("$1") == 2 and "$2" not in sql and values == ("2020-01-01 00:00:00",)
    assert "x::int" in sql


def _unordered_ids(url: str, scramble: bool) -> list[int]:
    with arrow_connection(parse_url(url), scramble=scramble) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {ADAPTER.id} FROM {ADAPTER.entity_table}")
        return cursor.fetch_arrow_table().column(0).to_pylist()


def test_the_scramble_reverses_what_gather_reads(tmp_path):
    # The connection gather reads through, with and without the scramble: an
    # unordered SELECT really comes back reversed (so `make verify`'s scramble
    # variant tests something).
    url = f"sqlite:///{build_tiny_source(tmp_path / 'tiny.sqlite', entities=5)}"
    plain = _unordered_ids(url, scramble=False)
    scrambled = _unordered_ids(url, scramble=True)
    assert len(plain) > 1 and len(set(plain)) > 1
    assert scrambled == plain[::-1]


@pytest.fixture(scope="module")
def source_url() -> str:
    require_source()
    return config.source_url()


@pytest.fixture(scope="module")
def snapshot(source_url, tmp_path_factory) -> Path:
    """The real source's snapshot at the committed as_of, as the stage writes it."""
    output = tmp_path_factory.mktemp("gather") / "snapshot.parquet"
    gather(ADAPTER, source_url, PARAMS.gather.moment, PARAMS.gather.chunk_rows, output)
    return output


@pytest.mark.long
def test_the_real_snapshot_has_the_declared_schema_and_is_ordered_by_id(snapshot):
    assert pq.read_schema(snapshot).remove_metadata() == ADAPTER.snapshot_schema
    ids = pq.read_table(snapshot, columns=[ADAPTER.id]).column(0).to_numpy()
    assert len(ids) > 0
    assert (ids[1:] > ids[:-1]).all()  # unique and ascending: ORDER BY the id, whatever the physical order


@pytest.mark.long
def test_the_real_snapshot_is_the_same_bytes_whatever_the_row_order(snapshot, source_url, tmp_path):
    # SQLite's reverse_unordered_selects hands any code that leans on an
    # unspecified order another order; the bytes must not move.
    again = tmp_path / "again.parquet"
    gather(ADAPTER, source_url, PARAMS.gather.moment, PARAMS.gather.chunk_rows, again, scramble=True)
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    assert digest(again) == digest(snapshot)


@pytest.mark.long
def test_chunk_size_changes_no_row(snapshot, source_url, tmp_path):
    other = tmp_path / "other.parquet"
    gather(ADAPTER, source_url, PARAMS.gather.moment, 7919, other)
    assert pq.read_table(other).equals(pq.read_table(snapshot))


def test_as_of_before_any_data_fails_and_leaves_nothing(source_url, tmp_path):
    output = tmp_path / "snap.parquet"
    with pytest.raises(SourceError, match="empty"):
        gather(ADAPTER, source_url, BEFORE_ANY_DATA, PARAMS.gather.chunk_rows, output)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


# --- the driver's own cause, not "table is missing" ---------------------------------

SECRET = "s3cr3t-pw"
READ_PATHS = [pytest.param(True, id="adbc"), pytest.param(False, id="sqlalchemy-rows")]


def _cause(url: str, tmp_path: Path, arrow_native: bool) -> str:
    output = tmp_path / "out" / "snapshot.parquet"
    output.parent.mkdir(exist_ok=True)
    output.write_bytes(b"the previous snapshot")
    with pytest.raises(SourceError) as error:
        gather(ADAPTER, url, BEFORE_ANY_DATA, 1000, output, arrow_native=arrow_native)
    assert output.read_bytes() == b"the previous snapshot"
    message = str(error.value)
    assert "\n" not in message and "is missing" not in message and SECRET not in message, message
    return message


@pytest.mark.slow
@pytest.mark.parametrize("arrow_native", READ_PATHS)
def test_a_locked_source_is_reported_as_locked(tmp_path, arrow_native):
    path = tmp_path / "locked.sqlite"
    _sqlite(path, ADAPTER.source_tables)
    # Another process: SQLite's POSIX locks do not conflict within one process.
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout.readline().strip() == "locked"
        message = _cause(f"sqlite://user:{SECRET}@/{path}", tmp_path, arrow_native)
    finally:
        locker.kill()
        locker.wait()
    assert "database is locked" in message and "another process holds a lock" in message, message


@pytest.mark.parametrize("arrow_native", READ_PATHS)
def test_a_file_that_is_not_sqlite_is_reported_as_such(tmp_path, arrow_native):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are notes, not a database\n" * 200)
    message = _cause(f"sqlite://user:{SECRET}@/{path}", tmp_path, arrow_native)
    assert "file is not a database" in message and "not a SQLite database" in message, message


@pytest.mark.parametrize("arrow_native", READ_PATHS)
def test_a_directory_is_reported_as_a_directory(tmp_path, arrow_native):
    folder = tmp_path / "source.sqlite"
    folder.mkdir()
    message = _cause(f"sqlite://user:{SECRET}@/{folder}", tmp_path, arrow_native)
    assert "is a directory" in message and "not found" not in message, message
