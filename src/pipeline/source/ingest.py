"""Append a plain table to a history: new entities and changed rows only, each a new version.

`ingest()` keeps the contract of history.py: version ids numbered in append
order, recorded_at never before the history's latest moment, and a row hash
(SHA-256 of the version's values) to tell a change from a repeat. Its command
is src/tools/ingest.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from src.pipeline.source.history import INT64, RECORDED_AT, RESERVED, ROW_HASH, VERSION_ID, HistoryError, history_table
from src.pipeline.source.moments import TIME_FORMAT, moment_text, refuse_future
from src.pipeline.source.url import directory_problem, redacted


@dataclass(frozen=True)
class IngestResult:
    table: str
    appended: int  # new versions: new entities and changed rows
    unchanged: int  # rows equal to their entity's latest version
    recorded_at: str | None  # the moment given to every appended row, if one


def _column_type(series: pd.Series) -> sa.types.TypeEngine:
    if pd.api.types.is_bool_dtype(series.dtype):
        return sa.Integer()
    if pd.api.types.is_integer_dtype(series.dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(series.dtype):
        return sa.Float()
    return sa.Text()


def _plain(value):
    """One cell as a JSON- and database-friendly Python value (missing -> None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        # 181.0 is 181: pandas reads a column of whole numbers as floats as soon
        # as one cell is missing, and that must not make every row "changed".
        return int(value) if value.is_integer() else float(value)
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.strftime(TIME_FORMAT)
    return str(value)


def row_hash(values: dict) -> str:
    # Canonical JSON of {column: value}, keys sorted and floats in shortest
    # repr: the same row hashes the same whatever file, or column order, it came in.
    return hashlib.sha256(
        json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def ingest(
    frame: pd.DataFrame,
    url: str,
    table: str,
    id_column: str,
    recorded_at: str | None = None,
    recorded_at_column: str | None = None,
    now: dt.datetime | None = None,
) -> IngestResult:
    """Append `frame` to the history table `table` at `url`: new entities and changed rows only.

    `recorded_at` (a date or UTC timestamp) stamps every appended row; or
    `recorded_at_column` names a column holding each row's moment; or, with
    neither, the rows are stamped with the current UTC time. The table is
    created on first use, with column types taken from the frame. A version
    recorded before the history's latest moment is refused: it would change
    snapshots already taken.
    """
    if recorded_at is not None and recorded_at_column is not None:
        raise HistoryError("give either a recorded_at moment or a recorded_at column, not both")
    _check_frame(frame, id_column, recorded_at_column)
    frame, moments = _stamped(frame, id_column, recorded_at, recorded_at_column, now)
    versions = _Versions.of(frame, id_column, moments)
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            appended = _append(connection, table, id_column, frame, versions)
    except sa.exc.DBAPIError as error:
        shown = engine.url.render_as_string(hide_password=True)
        raise HistoryError(redacted(f"cannot write to the source {shown}: {error.orig}", url)) from None
    except OverflowError as error:  # a value the driver cannot store (an integer past 64 bits): nothing written
        raise HistoryError(
            f"{table}: a value does not fit the database's types ({error}); nothing was appended"
        ) from None
    finally:
        engine.dispose()
    return IngestResult(table, appended, len(frame) - appended, moments[0] if recorded_at_column is None else None)


def _check_frame(frame: pd.DataFrame, id_column: str, recorded_at_column: str | None) -> None:
    """Refuse a table that cannot become a history: no or bad ids, reserved names, no rows."""
    if id_column not in frame.columns:
        raise HistoryError(f"the table has no id column {id_column!r} (columns: {list(frame.columns)})")
    clash = [name for name in RESERVED if name in frame.columns and name != recorded_at_column]
    if clash:
        raise HistoryError(f"columns {clash} are reserved by the history; rename them")
    if frame.empty:
        raise HistoryError("the table has no rows")
    ids = frame[id_column]
    if ids.isna().any():
        raise HistoryError(f"{id_column}: missing ids at rows {np.flatnonzero(ids.isna())[:3].tolist()}")
    if not pd.api.types.is_integer_dtype(ids.dtype) or pd.api.types.is_bool_dtype(ids.dtype):
        raise HistoryError(f"{id_column}: ids must be integers, got {ids.dtype}")
    # Only an unsigned column can hold one past int64 (pandas reads 2**63 so); a signed one fits.
    out_of_range = np.flatnonzero(ids.to_numpy() > INT64[1]) if ids.dtype.kind == "u" else []
    if len(out_of_range):
        raise HistoryError(
            f"{id_column}: id {ids.iloc[out_of_range[0]]} (row {out_of_range[0]}) does not fit a "
            f"64-bit integer ({INT64[0]} to {INT64[1]}): the history's ids are BIGINT"
        )
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise HistoryError(f"{id_column}: duplicate ids {sorted(set(duplicated.tolist()))[:5]}")


def _stamped(
    frame: pd.DataFrame,
    id_column: str,
    recorded_at: str | None,
    recorded_at_column: str | None,
    now: dt.datetime | None,
) -> tuple[pd.DataFrame, list[str]]:
    """`frame` less its recorded-at column, and each row's moment; a moment in the future is refused."""
    if recorded_at_column is not None:
        if recorded_at_column not in frame.columns:
            raise HistoryError(f"no recorded-at column {recorded_at_column!r}")
        moments = [_moment(value, recorded_at_column) for value in frame[recorded_at_column]]
        frame = frame.drop(columns=[recorded_at_column])
    else:
        stamp = (
            _moment(recorded_at, "recorded_at")
            if recorded_at is not None
            else (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime(TIME_FORMAT)
        )
        moments = [stamp] * len(frame)
    latest = max(range(len(moments)), key=moments.__getitem__)
    try:
        refuse_future(moments[latest], now)
    except ValueError as error:
        where = f" (row {latest}, {id_column}={frame[id_column].iloc[latest]})" if recorded_at_column else ""
        raise HistoryError(
            f"{recorded_at_column or 'recorded_at'}{where} {error}; a version dated in the future "
            "would also make every later ingest look back-dated"
        ) from None
    return frame, moments


@dataclass(frozen=True)
class _Versions:
    """The rows to compare with the history, in id order: so version ids follow a fixed order whatever the file's."""

    entities: list[int]
    moments: list[str]
    hashes: list[str]
    rows: list[list]
    data_columns: list[str]

    @classmethod
    def of(cls, frame: pd.DataFrame, id_column: str, moments: list[str]) -> _Versions:
        data_columns = [name for name in frame.columns if name != id_column]
        order = np.argsort(frame[id_column].to_numpy(), kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
        rows = [[_plain(value) for value in record] for record in frame[data_columns].itertuples(index=False)]
        hashes = [row_hash(dict(zip(data_columns, row, strict=True))) for row in rows]
        return cls(frame[id_column].tolist(), [moments[i] for i in order], hashes, rows, data_columns)


def _append(connection: sa.Connection, table: str, id_column: str, frame: pd.DataFrame, versions: _Versions) -> int:
    """Append the new and changed versions to `table` (created on first use); how many were appended."""
    target = _table(connection, table, id_column, frame, versions.data_columns)
    latest = _latest(connection, target, id_column)
    newest = connection.execute(sa.select(sa.func.max(target.c[RECORDED_AT]))).scalar()
    next_id = (connection.execute(sa.select(sa.func.max(target.c[VERSION_ID]))).scalar() or 0) + 1
    appended = []
    for entity, moment, digest, values in zip(
        versions.entities, versions.moments, versions.hashes, versions.rows, strict=True
    ):
        if latest.get(int(entity)) == digest:
            continue
        if newest is not None and moment < newest:
            raise HistoryError(
                f"{id_column}={entity}: recorded_at {moment} is before the history's latest "
                f"version ({newest}); appending it would change snapshots already taken"
            )
        appended.append(
            {
                VERSION_ID: next_id + len(appended),
                id_column: int(entity),
                RECORDED_AT: moment,
                ROW_HASH: digest,
                **dict(zip(versions.data_columns, values, strict=True)),
            }
        )
    if appended:
        connection.execute(target.insert(), appended)
    return len(appended)


def _engine(url: str) -> sa.Engine:
    """A transactional engine for the history at `url`; a URL that cannot be one is refused, naming why."""
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise HistoryError(redacted(f"cannot use the source URL: {type(error).__name__}: {error}", url)) from None
    problem = directory_problem(engine.url)
    if problem is not None:
        raise HistoryError(redacted(f"cannot write to the source: the {problem}", url))
    return _transactional(engine)


def _transactional(engine: sa.Engine) -> sa.Engine:
    """`engine`, with SQLite's CREATE TABLE inside the transaction too.

    Python's sqlite3 commits before DDL by itself, so a failed first ingest
    left an empty table behind; BEGIN emitted by us makes the table and its
    rows commit or vanish together (SQLAlchemy's documented pysqlite recipe).
    """
    if engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":

        @sa.event.listens_for(engine, "connect")
        def _no_implicit_commit(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(connection):
            connection.exec_driver_sql("BEGIN")

    return engine


def _moment(value, column: str) -> str:
    try:
        return moment_text(pd.Timestamp(value).isoformat() if not isinstance(value, str) else value)
    except ValueError as error:
        raise HistoryError(f"{column}: {error}") from None


def _table(
    connection: sa.Connection, name: str, id_column: str, frame: pd.DataFrame, data_columns: list[str]
) -> sa.Table:
    inspector = sa.inspect(connection)
    if not inspector.has_table(name):
        metadata = sa.MetaData()
        table = history_table(
            metadata, name, id_column, *(sa.Column(column, _column_type(frame[column])) for column in data_columns)
        )
        metadata.create_all(connection)
        return table
    present = [column["name"] for column in inspector.get_columns(name)]
    expected = [VERSION_ID, id_column, RECORDED_AT, ROW_HASH, *data_columns]
    if sorted(present) != sorted(expected):
        missing = [c for c in expected if c not in present]
        extra = [c for c in present if c not in expected]
        raise HistoryError(
            f"table {name!r} exists with other columns: "
            + ", ".join(
                f"the {side} lacks {columns}" for side, columns in (("file", extra), ("table", missing)) if columns
            )
        )
    return sa.Table(name, sa.MetaData(), autoload_with=connection)


def _latest(connection: sa.Connection, table: sa.Table, id_column: str) -> dict[int, str]:
    """Each entity's latest row hash (as of now: appends are compared with the present)."""
    ranked = sa.select(
        table.c[id_column],
        table.c[ROW_HASH],
        sa.func.row_number()
        .over(partition_by=table.c[id_column], order_by=[table.c[RECORDED_AT].desc(), table.c[VERSION_ID].desc()])
        .label("rn"),
    ).subquery()
    result = connection.execute(sa.select(ranked.c[id_column], ranked.c[ROW_HASH]).where(ranked.c.rn == 1))
    return {int(entity): digest for entity, digest in result}
