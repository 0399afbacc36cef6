"""Stage `gather`: a point-in-time snapshot of the source database.

Runs the adapter's point-in-time query: every record as it was known at
`gather.as_of` (never "now"), ordered by the unique id, streamed in chunks into
one Parquet file with the adapter's explicit schema. However much the source
has grown or been corrected since `as_of`, the snapshot's bytes stay the same.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from src.pipeline import config, files
from src.pipeline.adapter import Adapter
from src.pipeline.history import TIME_FORMAT, _redacted
from src.pipeline.params import ParamsError, as_of_timestamp, load_adapter, load_params


class SourceError(RuntimeError):
    """The source cannot be read as the snapshot needs it."""


def open_source(url: str, scramble: bool = False) -> sa.Engine:
    """An engine for `url`; a missing SQLite file is an error, not a new empty DB.

    No error repeats a password from `url`: messages end up in terminals and
    CI logs. `scramble` turns on SQLite's reverse_unordered_selects: any code
    that leans on an unspecified row order then gets another order (used by
    `make verify`).
    """
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        # Not quoted back: any part of an unparsed URL may be the password.
        raise SourceError(f"the source URL is not a database URL; set {config.SOURCE_URL_ENV} to one like "
                          "postgresql://user@host/database or sqlite:///path/to/source.sqlite") from None
    shown = _redacted(parsed.render_as_string(hide_password=True), url)
    target = url
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:" or not Path(database).is_file():
            raise SourceError(_redacted(
                f"source database not found: {database or shown} (build the demo with `make source`, "
                "or ingest a table: `python -m src.tools.ingest`)", url))
        # Read-only: a snapshot must never write to the source.
        target = f"sqlite:///file:{Path(database).resolve()}?mode=ro&uri=true"
    try:
        engine = sa.create_engine(target)
    except Exception as error:  # bad URL or missing driver
        raise SourceError(_redacted(f"cannot use source URL {shown}: {error}", url)) from None
    if scramble and engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _reverse(connection, _record):
            connection.execute("PRAGMA reverse_unordered_selects = ON")
    return engine


def check_source(connection: sa.Connection, declared: sa.MetaData) -> None:
    """Name every table or column the snapshot query needs but the source lacks."""
    inspector = sa.inspect(connection)
    tables = set(inspector.get_table_names())
    problems = []
    for table, columns in ((t.name, [c.name for c in t.columns]) for t in declared.sorted_tables):
        if table not in tables:
            problems.append(f"table {table!r} is missing")
            continue
        present = {column["name"] for column in inspector.get_columns(table)}
        absent = [column for column in columns if column not in present]
        if absent:
            problems.append(f"table {table!r} lacks columns {absent}")
    if problems:
        raise SourceError("the source does not match the snapshot query: " + "; ".join(problems))


def to_snapshot_table(columns: list[str], rows: list, schema: pa.Schema) -> pa.Table:
    """One chunk of query rows as an Arrow table with the snapshot's exact schema.

    Column by column straight into Arrow (no pandas frame in between: building
    one from driver rows cost more than the query). Each column's type is
    inferred first and then cast with safe=True, so a value that does not fit
    the schema (1.5 in an integer column, 300 in int8) raises instead of being
    truncated. Timestamps are the source's UTC text, parsed in one format.
    """
    values = dict(zip(columns, zip(*rows, strict=True), strict=True)) if rows else {name: () for name in columns}
    missing = [name for name in schema.names if name not in values]
    if missing:
        raise SourceError(f"the snapshot query returned no columns {missing}")
    arrays = []
    for field in schema:
        array = pa.array(values[field.name], from_pandas=False)
        if pa.types.is_timestamp(field.type):
            array = pc.strptime(array.cast(pa.string()), format=TIME_FORMAT, unit="us")
        arrays.append(array.cast(field.type, safe=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def read_snapshot(connection: sa.Connection, adapter: Adapter, as_of: str, chunk_rows: int) -> Iterator[pa.Table]:
    """Stream the point-in-time query's rows as Arrow tables of at most `chunk_rows`."""
    result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
        sa.text(adapter.snapshot_query), {"as_of": as_of}
    )
    columns = list(result.keys())
    for rows in result.partitions(chunk_rows):
        yield to_snapshot_table(columns, rows, adapter.snapshot_schema)


def gather(adapter: Adapter, url: str, as_of: str, chunk_rows: int, output: Path, scramble: bool = False) -> int:
    """Write the snapshot at `as_of` to `output`; return its row count."""
    engine = open_source(url, scramble=scramble)
    try:
        with engine.connect() as connection:
            check_source(connection, adapter.source_tables)
            rows = files.write_parquet(
                output, _nonempty(read_snapshot(connection, adapter, as_of, chunk_rows), as_of),
                adapter.snapshot_schema)
    except sa.exc.DBAPIError as error:
        # A driver may quote its connection string (password included) back.
        raise SourceError(_redacted(f"cannot read the source: {error.orig}", url)) from None
    finally:
        engine.dispose()
    return rows


def _nonempty(tables: Iterator[pa.Table], as_of: str) -> Iterator[pa.Table]:
    # Raising inside the writer's loop aborts the atomic write: no file is left.
    empty = True
    for table in tables:
        empty = empty and table.num_rows == 0
        yield table
    if empty:
        raise SourceError(f"the snapshot at as_of={as_of} is empty: nothing was recorded by then")


def main() -> None:
    params = load_params()
    adapter, _ = load_adapter(params)
    started = time.perf_counter()
    rows = gather(
        adapter,
        config.source_url(),
        as_of_timestamp(params.gather.as_of),
        params.gather.chunk_rows,
        config.SNAPSHOT,
        scramble=os.environ.get(config.SCRAMBLE_ENV) == "1",
    )
    print(f"gather: {rows} {adapter.entity} as of {params.gather.as_of} -> {config.SNAPSHOT.relative_to(config.ROOT)} "
          f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, SourceError, files.DiskFullError) as error:
        sys.exit(f"gather: error: {error}")
