"""Append a plain table (CSV or Parquet) to the append-only history at the source URL.

    python -m src.tools.ingest FILE --table NAME --id COLUMN [--recorded-at COLUMN|TIMESTAMP]

New ids and changed rows become new versions (told apart by a hash of the row's
values); rows equal to their id's latest version add nothing, so ingesting the
same file twice adds nothing. Nothing is updated or deleted. The history's
layout is the source contract (src/pipeline/history.py). The URL is
SOURCE_URL, or the embedded data/source/source.sqlite; --url overrides both.
The embedded history is data like any other output: after each ingest into it,
DVC tracks it (data/source/source.sqlite.dvc goes into git, the file into the
DVC cache and, with `dvc push`, the remote), so a colleague's fresh clone gets
the same history by `dvc pull` (`make repro` does that): docs/adapt.md step 3.
A server's password belongs in the environment (PGPASSWORD, ~/.pgpass), not in
the URL: docs/postgres.md. No error repeats it.
From Python: `src.pipeline.history.ingest(frame, url, table, id_column, ...)`.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa

from src.pipeline import config
from src.pipeline.history import HistoryError, as_of_text, ingest


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; only the literal NA or an empty field is missing in CSV."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise HistoryError(f"{path} not found")
    if suffix == ".csv":
        try:
            frame = pd.read_csv(path, keep_default_na=False, na_values=["", "NA"])
            _check_field_counts(path)
        except pd.errors.EmptyDataError:
            raise HistoryError(f"{path} is empty: no header, no rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as error:
            raise HistoryError(f"{path} is not a well-formed CSV: {error}") from None
        return frame
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except (pa.ArrowException, OSError) as error:
            raise HistoryError(f"{path} is not a readable Parquet file: {error}") from None
    raise HistoryError(f"{path}: unknown format {suffix!r}; use .csv or .parquet")


def _check_field_counts(path: Path) -> None:
    """Every row has the header's number of fields.

    pandas takes a first row with extra fields as an index (shifting every
    value to the wrong column) and pads a short row with missing values,
    both silently: a damaged file must stop here instead.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                raise HistoryError(f"{path} is not a well-formed CSV: line {reader.line_num} has {len(row)} "
                                   f"fields, the header {len(header)}")


def track_history(root: Path = config.ROOT) -> Path:
    """Track the embedded history with DVC; return its pointer file (data/source/source.sqlite.dvc).

    One object per ingest: DVC dedups whole files, and SQLite rewrites pages
    all over the file, so each version of the history is stored whole (the
    layout measurement is in docs/adapt.md). gather does not depend on this
    pointer in dvc.yaml: `as_of` pins what a snapshot reads from an
    append-only history, wherever it lives (SOURCE_URL or this file).
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    database = root / config.SOURCE_DB.relative_to(config.ROOT)
    try:
        with Repo(str(root)) as repo:
            repo.add([str(database)])
    except DvcException as error:
        raise HistoryError(f"the history was ingested, but DVC could not track {database}: {error}; "
                           f"run `dvc add {database.relative_to(root)}` once it is fixed") from None
    return database.with_name(database.name + ".dvc")


def unprotect_history(root: Path = config.ROOT) -> None:
    """Before SQLite writes into a tracked history in place: never through a link into the DVC cache.

    With the default cache type (copy) the file is already a private copy; a
    project that set cache.type to hardlink or symlink would otherwise have
    its cached versions rewritten by the ingest.
    """
    from dvc.repo import Repo

    database = root / config.SOURCE_DB.relative_to(config.ROOT)
    if database.with_name(database.name + ".dvc").is_file() and database.exists():
        with Repo(str(root)) as repo:
            repo.unprotect(str(database))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="the table: .csv or .parquet")
    parser.add_argument("--table", required=True, help="the history table to append to (created on first use)")
    parser.add_argument("--id", required=True, dest="id_column", help="the integer id column, unique in the file")
    parser.add_argument("--recorded-at", default=None,
                        help="a column holding each row's moment, or one moment for all rows "
                             "(YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ); default: now, in UTC")
    parser.add_argument("--url", default=None, help=f"SQLAlchemy URL, e.g. postgresql://user@host/db "
                                                    f"(default: ${config.SOURCE_URL_ENV} or "
                                                    f"{config.SOURCE_DB.relative_to(config.ROOT)})")
    parser.add_argument("--no-track", action="store_true",
                        help="leave the embedded history untracked by DVC (default: `dvc add` it after the ingest)")
    args = parser.parse_args(argv)
    frame = read_table(args.file)
    moment = column = None
    if args.recorded_at is not None:
        if args.recorded_at in frame.columns:
            column = args.recorded_at
        else:
            try:
                moment = as_of_text(args.recorded_at)
            except ValueError as error:
                raise HistoryError(f"--recorded-at is neither a column of {args.file} nor a moment: {error}") from None
    url = args.url or config.source_url()
    embedded = not args.url and not os.environ.get(config.SOURCE_URL_ENV)
    if embedded:
        config.SOURCE_DB.parent.mkdir(parents=True, exist_ok=True)
        unprotect_history()
    result = ingest(frame, url, args.table, args.id_column, recorded_at=args.recorded_at if moment else None,
                    recorded_at_column=column)
    when = f" recorded at {result.recorded_at}" if result.recorded_at else ""
    print(f"ingest: {result.appended} new versions{when}, {result.unchanged} unchanged rows -> table {args.table!r}")
    if embedded and not args.no_track:
        pointer = track_history().relative_to(config.ROOT)
        print(f"ingest: the history is tracked by DVC; commit its pointer and share it: "
              f"git add {pointer} && git commit && dvc push")


if __name__ == "__main__":
    try:
        main()
    except HistoryError as error:
        sys.exit(f"ingest: error: {error}")
