"""Append a plain table (CSV or Parquet) to the append-only history at the source URL.

    python -m src.tools.ingest FILE --table NAME --id COLUMN [--recorded-at COLUMN|TIMESTAMP]
                               [--parse-dates COLUMN[,COLUMN...]]

New ids and changed rows become new versions (told apart by a hash of the row's
values); rows equal to their id's latest version add nothing, so ingesting the
same file twice adds nothing. Nothing is updated or deleted. The history's
layout is the source contract (src/pipeline/source/history.py). The URL is
SOURCE_URL, or the embedded data/source/source.sqlite; --url overrides both.
CSV has no types: a date or time column is text there, and gather refuses
text that is not the source's own timestamp format where the adapter declares
a `pa.timestamp` column. `--parse-dates` names such columns: each value is
read as an ISO 8601 date or time (UTC unless it carries an offset) and stored
as the source's timestamp text, as Parquet datetimes are.
The embedded history is data like any other output: after each ingest into it,
DVC tracks it (data/source/source.sqlite.dvc goes into git, the file into the
DVC cache and, with `dvc push`, the remote), so a colleague's fresh clone gets
the same history by `dvc pull` (`make repro` does that): docs/adapt.md step 3.
A server's password belongs in the environment (PGPASSWORD, ~/.pgpass), not in
the URL: docs/postgres.md. No error repeats it.
From Python: `src.pipeline.source.ingest.ingest(frame, url, table, id_column, ...)`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa

from src.pipeline import config
from src.pipeline.source.history import HistoryError
from src.pipeline.source.ingest import ingest
from src.pipeline.source.moments import moment_text


def read_table(path: Path, parse_dates: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; only the literal NA or an empty field is missing in CSV.

    Each column in `parse_dates` becomes UTC datetimes (see `parse_times`).
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise HistoryError(f"{path} not found")
    if suffix == ".csv":
        try:
            # Dates stay text here: pandas would guess their format per column.
            frame = pd.read_csv(path, keep_default_na=False, na_values=["", "NA"])
            lines = _check_field_counts(path)
        except pd.errors.EmptyDataError:
            raise HistoryError(f"{path} is empty: no header, no rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as error:
            raise HistoryError(f"{path} is not a well-formed CSV: {error}") from None
        # One start line per row, unless pandas and csv saw the rows differently (then count rows).
        where = (
            [f"line {line}" for line in lines]
            if len(lines) == len(frame)
            else [f"row {row}" for row in range(1, len(frame) + 1)]
        )
    elif suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as error:
            raise HistoryError(f"{path} is not a readable Parquet file: {error}") from None
        where = [f"row {row}" for row in range(1, len(frame) + 1)]
    else:
        raise HistoryError(f"{path}: unknown format {suffix!r}; use .csv or .parquet")
    for column in parse_dates:
        if column not in frame.columns:
            raise HistoryError(f"{path}: --parse-dates names no column {column!r} (columns: {list(frame.columns)})")
        frame[column] = parse_times(
            frame[column],
            lambda index, value, problem, column=column: HistoryError(
                f"{path}, column {column!r}, {where[index]}: {value!r} {problem}"
            ),
        )
    return frame


def parse_times(values: pd.Series, fail) -> pd.Series:
    """ISO 8601 dates or times as UTC datetimes; `fail(index, value, problem)` makes the error for a bad one.

    Strict ISO 8601 (datetime.fromisoformat), never pandas' per-column guess,
    which reads 01/02/2024 as January or February depending on the other rows.
    A bare date is midnight UTC; a time without an offset is UTC, as the
    source's own timestamp text is. Fractions of a second are refused: the
    source keeps whole seconds, and dropping them would hide a difference.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values  # Parquet's own datetimes: ingest stores them as they are
    parsed = []
    for index, value in enumerate(values):
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            parsed.append(pd.NaT)
            continue
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise fail(
                index,
                value,
                "is not an ISO 8601 date or time (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or YYYY-MM-DDTHH:MM:SSZ)",
            ) from None
        if moment.microsecond:
            raise fail(index, value, "has fractions of a second; the source keeps whole seconds")
        moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
        parsed.append(pd.Timestamp(moment))
    return pd.Series(pd.to_datetime(parsed, utc=True), index=values.index, name=values.name).astype(
        "datetime64[us, UTC]"
    )


def _check_field_counts(path: Path) -> list[int]:
    """Every row has the header's number of fields; the line each row starts on, in order.

    pandas takes a first row with extra fields as an index (shifting every
    value to the wrong column) and pads a short row with missing values,
    both silently: a damaged file must stop here instead. The lines let an
    error name where a bad value is, even after a quoted field that spans lines.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        lines, previous = [], reader.line_num
        for row in reader:
            if row and len(row) != len(header):
                raise HistoryError(
                    f"{path} is not a well-formed CSV: line {reader.line_num} has {len(row)} "
                    f"fields, the header {len(header)}"
                )
            if row:  # pandas skips blank lines too
                lines.append(previous + 1)
            previous = reader.line_num
        return lines


def track_history(root: Path = config.ROOT) -> Path:
    """Track the embedded history with DVC; return its pointer file (data/source/source.sqlite.dvc).

    One object per ingest: DVC dedups whole files, and SQLite rewrites pages
    all over the file, so each version of the history is stored whole (the
    layout measurement is in docs/remotes.md). gather does not depend on this
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
        raise HistoryError(
            f"the history was ingested, but DVC could not track {database}: {error}; "
            f"run `dvc add {database.relative_to(root)}` once it is fixed"
        ) from None
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m src.tools.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="the table: .csv or .parquet")
    parser.add_argument("--table", required=True, help="the history table to append to (created on first use)")
    parser.add_argument("--id", required=True, dest="id_column", help="the integer id column, unique in the file")
    parser.add_argument(
        "--recorded-at",
        default=None,
        help="a column holding each row's moment, or one moment for all rows "
        "(YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ); default: now, in UTC",
    )
    parser.add_argument(
        "--parse-dates",
        default="",
        metavar="COLUMN[,COLUMN...]",
        help="columns of ISO 8601 dates or times (UTC unless an offset is given) to store as the "
        "source's timestamps; needed in CSV for every column the adapter declares as "
        "pa.timestamp (not the --recorded-at column)",
    )
    parser.add_argument(
        "--url",
        default=None,
        help=f"SQLAlchemy URL, e.g. postgresql://user@host/db "
        f"(default: ${config.SOURCE_URL_ENV} or "
        f"{config.SOURCE_DB.relative_to(config.ROOT)})",
    )
    parser.add_argument(
        "--no-track",
        action="store_true",
        help="leave the embedded history untracked by DVC (default: `dvc add` it after the ingest)",
    )
    return parser


def _date_columns(parse_dates: str, recorded_at: str | None) -> tuple[str, ...]:
    """--parse-dates' column names; the --recorded-at column may not be one of them."""
    columns = tuple(name.strip() for name in parse_dates.split(",") if name.strip())
    if recorded_at in columns:
        raise HistoryError(
            f"--recorded-at {recorded_at} is read as a moment already (a bare date is the end "
            "of that day); leave it out of --parse-dates"
        )
    return columns


def _moment_or_column(recorded_at: str | None, frame: pd.DataFrame, path: Path) -> tuple[str | None, str | None]:
    """--recorded-at as (one moment for all rows, a column of the frame); at most one is set."""
    if recorded_at is None:
        return None, None
    if recorded_at in frame.columns:
        return None, recorded_at
    try:
        return moment_text(recorded_at), None
    except ValueError as error:
        raise HistoryError(f"--recorded-at is neither a column of {path} nor a moment: {error}") from None


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    parse_dates = _date_columns(args.parse_dates, args.recorded_at)
    frame = read_table(args.file, parse_dates)
    moment, column = _moment_or_column(args.recorded_at, frame, args.file)
    url = args.url or config.source_url()
    embedded = not args.url and not os.environ.get(config.SOURCE_URL_ENV)
    if embedded:
        config.SOURCE_DB.parent.mkdir(parents=True, exist_ok=True)
        unprotect_history()
    result = ingest(
        frame,
        url,
        args.table,
        args.id_column,
        recorded_at=args.recorded_at if moment else None,
        recorded_at_column=column,
    )
    when = f" recorded at {result.recorded_at}" if result.recorded_at else ""
    print(f"ingest: {result.appended} new versions{when}, {result.unchanged} unchanged rows -> table {args.table!r}")
    if embedded and not args.no_track:
        pointer = track_history().relative_to(config.ROOT)
        print(
            f"ingest: the history is tracked by DVC; commit its pointer and share it: "
            f"git add {pointer} && git commit && dvc push"
        )


def cli(argv: list[str] | None = None) -> None:
    """main, with every refusal one line on stderr and exit status 1 (what `python -m` runs)."""
    try:
        main(argv)
    except HistoryError as error:
        sys.exit(f"ingest: error: {error}")


if __name__ == "__main__":
    cli()
