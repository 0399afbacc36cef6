"""Stage `gather`: a point-in-time snapshot of the source database.

Runs the adapter's point-in-time query: every record as it was known at
`gather.as_of` (never "now"), ordered by the unique id, streamed in chunks into
one Parquet file with the adapter's explicit schema. However much the source
has grown or been corrected since `as_of`, the snapshot's bytes stay the same.

The reading is the source layer's (src/pipeline/source/): the URL, the ADBC
and SQLAlchemy readers, the history contract check and the check of every
value against the adapter's declared types and domains. This stage reads the
params, picks the reader and writes the snapshot.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from src.pipeline import config, files
from src.pipeline.adapter import Adapter
from src.pipeline.dataset import load_adapter
from src.pipeline.params import ParamsError, load_params
from src.pipeline.source import scramble as scrambler
from src.pipeline.source.readers import ARROW_DRIVERS, TypedFromFirstBatch, read_arrow, read_rows
from src.pipeline.source.url import SourceError, parse_url
from src.pipeline.source.validate import SourceValueError


def _ordered(tables: Iterator[pa.Table], adapter: Adapter, as_of: str) -> Iterator[pa.Table]:
    """Refuse an empty snapshot, and ids that are not unique and ascending (the query's ORDER BY)."""
    # Raising inside the writer's loop aborts the atomic write: no file is left.
    last = None
    empty = True
    for table in tables:
        ids = table.column(adapter.id).to_numpy()
        if len(ids):
            empty = False
            if (last is not None and ids[0] <= last) or (ids[1:] <= ids[:-1]).any():
                raise SourceError(
                    f"the snapshot query's {adapter.id} values are not unique and ascending: "
                    f"it must end with ORDER BY {adapter.id}, and {adapter.id} must be unique"
                )
            last = ids[-1]
        yield table
    if empty:
        raise SourceError(f"the snapshot at as_of={as_of} is empty: nothing was recorded by then")


def gather(
    adapter: Adapter,
    url: str,
    as_of: str,
    chunk_rows: int,
    output: Path,
    scramble: bool = False,
    arrow_native: bool | None = None,
) -> int:
    """Write the snapshot at `as_of` (the source's timestamp text) to `output`; return its row count.

    `arrow_native`: read through ADBC (True) or SQLAlchemy rows (False);
    None picks ADBC where the backend has a driver.
    """
    source = parse_url(url)
    if arrow_native is None:
        arrow_native = source.backend in ARROW_DRIVERS
    if scramble:
        # In the log of `make verify`'s scramble run: the variant reached the stage.
        print(f"gather: {config.SCRAMBLE_ENV}=1: {scrambler.effect(source.backend)}")
    if arrow_native:
        try:
            return write_snapshot(
                read_arrow(source, adapter, as_of, chunk_rows, scramble), adapter, as_of, chunk_rows, output
            )
        except TypedFromFirstBatch as error:
            # The same values, read row by row, give the same bytes (or name the bad
            # value). On stdout: stderr is for the one line that says why a run failed.
            print(
                f"gather: the SQLite driver typed a column from its first batch ({error}); reading row by row instead"
            )
    return write_snapshot(read_rows(source, adapter, as_of, chunk_rows, scramble), adapter, as_of, chunk_rows, output)


def write_snapshot(tables: Iterator[pa.Table], adapter: Adapter, as_of: str, chunk_rows: int, output: Path) -> int:
    """Stream checked snapshot tables into `output`, atomically; return the row count."""
    # Row groups of exactly chunk_rows whatever sizes the driver delivered
    # (PostgreSQL's gives one batch): featurize's streaming writer, reused.
    with files.parquet_stream(output, adapter.snapshot_schema, row_group_rows=chunk_rows) as stream:
        for table in _ordered(tables, adapter, as_of):
            stream.write(table)
    return stream.rows


def main() -> None:
    params = load_params()
    adapter, _ = load_adapter(params)
    started = time.perf_counter()
    rows = gather(
        adapter,
        config.source_url(),
        params.gather.moment,
        params.gather.chunk_rows,
        config.SNAPSHOT,
        scramble=scrambler.requested(),
    )
    print(
        f"gather: {rows} {adapter.entity} as of {params.gather.as_of} -> {config.SNAPSHOT.relative_to(config.ROOT)} "
        f"({time.perf_counter() - started:.1f} s)"
    )


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, SourceError, SourceValueError, files.DiskFullError) as error:
        sys.exit(f"gather: error: {error}")
