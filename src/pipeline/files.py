"""Byte-stable, atomic file writing and hashing shared by every stage.

Outputs are written to a temporary file next to the target and renamed into
place only when complete, so a failing stage never leaves a half-written
output for DVC (or a user) to mistake for a result.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Fixed writer settings: a default that moves between pyarrow releases would
# change bytes. (pyarrow's version is in the footer anyway; it is locked.)
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, version="2.6", write_statistics=True)
# Rows per row group when a table is written whole: pyarrow's write_table
# default. Stated here because a streamed file must cut its row groups at
# exactly these rows to equal the file that one write_table call gives.
ROW_GROUP_ROWS = 1024 * 1024


class DiskFullError(OSError, ValueError):
    """The disk filled up while writing an output; the message names the file.

    Still an OSError (errno ENOSPC) for code that handles those, and a
    ValueError so that every stage's main, which prints ValueErrors without a
    traceback, reports it as one line.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files that an interrupted write to `path` left; return them.

    A killed run (kill -9, power loss) never reaches atomic_path's cleanup, so
    its `.<name>.<random>.tmp` would stay next to the target for good. Only that
    exact pattern is touched: the random part has no dot, so the leftovers of
    a target named `<name>.<more>` are not this target's.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[^.]+\.tmp")
    removed = []
    for sibling in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if pattern.fullmatch(sibling.name) and sibling.is_file() and not sibling.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                sibling.unlink()
                removed.append(sibling)
    return removed


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete every `.<name>.tmp` entry directly in `folder` (files and folders, never through a link); return them.

    The pipeline's writers name every temporary so (atomic_path's files,
    evaluate's staging folders), and only in the folders that hold outputs.
    The caller makes sure no writer is running (check_params.sweep_temporaries).
    """
    removed = []
    for entry in sorted(Path(folder).glob(".*.tmp")):
        if entry.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        _raise_if_disk_full(error, path)
        raise
    os.close(handle)
    try:
        yield Path(temporary)
        # mkstemp creates 0600; give the output the mode any new file gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except OSError as error:
        _raise_if_disk_full(error, path)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _raise_if_disk_full(error: OSError, path: Path) -> None:
    """Turn a full disk into a DiskFullError naming `path`; leave any other OSError alone."""
    if isinstance(error, DiskFullError):
        return
    # pyarrow reports a failed write as an OSError whose errno may be unset: read its text too.
    if error.errno == errno.ENOSPC or "no space left on device" in str(error).lower():
        raise DiskFullError(
            errno.ENOSPC, f"cannot write {path}: no space left on device; free some space and rerun"
        ) from None


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    with atomic_path(path) as temporary:
        encoding = None if "b" in mode else "utf-8"
        # newline="\n": the same bytes on every OS (DVC hashes raw bytes).
        newline = None if "b" in mode else "\n"
        with open(temporary, mode, encoding=encoding, newline=newline) as handle:
            yield handle


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert with an explicit schema and no pandas metadata.

    The schema pins every column's type; dropping the pandas metadata keeps the
    pandas version (and index details) out of the file's bytes.
    """
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False, safe=True)
    return table.replace_schema_metadata(None)


def write_parquet(path: Path, tables: Iterable[pa.Table], schema: pa.Schema) -> int:
    """Stream tables into one Parquet file atomically; return the row count."""
    rows = 0
    with atomic_path(path) as temporary, pq.ParquetWriter(temporary, schema, **PARQUET_OPTIONS) as writer:
        for table in tables:
            writer.write_table(table.cast(schema))
            rows += table.num_rows
    return rows


class RowGroupWriter:
    """Tables in, row groups of exactly `row_group_rows` rows out (the last one shorter).

    The file equals, byte for byte, one write_table call on all the rows: the
    same row group boundaries, and each row group's columns handed over as one
    contiguous array (pyarrow restarts its write batches where an array's
    chunks meet, which moves page boundaries: a row group written from pieces
    encodes differently). Holds at most one row group of pending rows, plus
    the overshoot of one `write`.
    """

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS):
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
        self._writer, self._schema, self._row_group_rows = writer, schema, row_group_rows
        self._pending: list[list[pa.Array]] = [[] for _ in schema]
        self._pending_rows = 0
        self.rows = 0  # written or pending

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.cast(self._schema)
        for pending, column in zip(self._pending, table.columns, strict=True):
            # A copy of each column: arrays converted from pandas may share one
            # buffer across columns, which would keep every column's pieces
            # alive until the last column of a row group is joined.
            pending.append(pa.concat_arrays(column.chunks))
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        while self._pending_rows >= self._row_group_rows:
            self._write_row_group(self._row_group_rows)

    def close(self) -> None:
        """Write the last, shorter row group; an empty file still gets its one empty row group, as write_table gives."""
        if self._pending_rows or self.rows == 0:
            self._write_row_group(self._pending_rows)

    def _write_row_group(self, rows: int) -> None:
        arrays = []
        for index, pending in enumerate(self._pending):
            whole = pa.concat_arrays(pending) if pending else pa.array([], self._schema.field(index).type)
            # Column by column, each column's pieces freed as it is joined: the
            # pending rows and their joined copy are never both held in full.
            pending.clear()
            # Hand the freed pieces back before the next column is joined: the
            # allocator would otherwise keep them, and hold the row group twice.
            pa.default_memory_pool().release_unused()
            if len(whole) > rows:
                # A copy, so the written rows' buffers are not kept alive by the rest.
                pending.append(pa.concat_arrays([whole.slice(rows)]))
            arrays.append(whole.slice(0, rows))
        self._pending_rows -= rows
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema), row_group_size=max(rows, 1))


@contextlib.contextmanager
def parquet_stream(path: Path, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS) -> Iterator[RowGroupWriter]:
    """Yield a RowGroupWriter into `path`, atomically: the file appears only if the block ends without error."""
    with atomic_path(path) as temporary, pq.ParquetWriter(temporary, schema, **PARQUET_OPTIONS) as writer:
        stream = RowGroupWriter(writer, schema, row_group_rows)
        yield stream
        stream.close()


def write_frame(path: Path, frame: pd.DataFrame, schema: pa.Schema | None = None) -> None:
    if schema is None:
        schema = pa.Schema.from_pandas(frame, preserve_index=False).remove_metadata()
    write_parquet(path, [to_arrow(frame, schema)], schema)


def read_frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found: run the stage that writes it (`dvc repro`)")
    return pq.read_table(path, columns=columns).to_pandas()


def read_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A Parquet file as frames of at most `chunk_rows` rows, each as the rows of read_frame's whole frame.

    Two things in a chunk would otherwise differ from the same rows of the
    whole frame: the index (here it continues from the previous chunk), and
    the dtype pandas picks for integer and boolean columns, which depends on
    whether the rows at hand have a gap (float64 and object if so). Columns
    with a gap anywhere in the file get the whole frame's dtype in every chunk.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found: run the stage that writes it (`dvc repro`)")
    # No pre-buffering and no decoding threads: both hold more than one chunk
    # in memory at once, and streaming is for files that do not fit.
    parquet = pq.ParquetFile(path, pre_buffer=False)
    widened = _widened_dtypes(parquet)
    start = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, use_threads=False):
        frame = batch.to_pandas()
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame.astype(widened) if widened else frame


def _widened_dtypes(parquet: pq.ParquetFile) -> dict[str, str]:
    """The pandas dtype of each integer or boolean column that has a gap somewhere in the file."""
    widened = {}
    leaves = {parquet.schema.column(index).path: index for index in range(len(parquet.schema))}
    for field in parquet.schema_arrow:
        if pa.types.is_integer(field.type):
            dtype = "float64"
        elif pa.types.is_boolean(field.type):
            dtype = "object"
        else:
            continue
        index = leaves[field.name]
        for group in range(parquet.metadata.num_row_groups):
            statistics = parquet.metadata.row_group(group).column(index).statistics
            if statistics is not None and statistics.has_null_count:
                gaps = statistics.null_count
            else:  # a writer that kept no counts: read this one column chunk
                gaps = parquet.read_row_group(group, columns=[field.name]).column(0).null_count
            if gaps:
                widened[field.name] = dtype
                break
    return widened


def write_json(path: Path, data: object) -> None:
    """Sorted keys, fixed indent, trailing newline: one byte layout everywhere."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes: SHA-256 for the manifest, MD5 as dvc.lock records it (DVC 3)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()
