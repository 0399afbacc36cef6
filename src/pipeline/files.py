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
        raise DiskFullError(errno.ENOSPC,
                            f"cannot write {path}: no space left on device; free some space and rerun") from None


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


def write_frame(path: Path, frame: pd.DataFrame, schema: pa.Schema | None = None) -> None:
    if schema is None:
        schema = pa.Schema.from_pandas(frame, preserve_index=False).remove_metadata()
    write_parquet(path, [to_arrow(frame, schema)], schema)


def read_frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found: run the stage that writes it (`dvc repro`)")
    return pq.read_table(path, columns=columns).to_pandas()


def write_json(path: Path, data: object) -> None:
    """Sorted keys, fixed indent, trailing newline: one byte layout everywhere."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
