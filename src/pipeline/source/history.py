"""The source contract: an append-only, timestamped history that gather reads as of a moment.

Every table a snapshot reads keeps *versions* of its records:
- `version_id`: an integer unique in the table (the primary key). It breaks
  ties between versions recorded at the same moment, so the choice never
  depends on physical row order.
- an entity id (an integer; e.g. `order_id`): the key that the snapshot, its
  split and every ORDER BY use. A record may have many versions.
- `recorded_at`: when the version became known, as UTC text in TIME_FORMAT,
  so comparing strings compares moments on every database.
Rows are only ever appended: nothing is updated or deleted. A snapshot as of
a moment keeps, per entity, the latest version recorded at or before it.

`ingest()` turns a plain table into such a history (src/tools/ingest.py is its
command); `latest_query()` is the point-in-time read of one such table;
`copy_tables()` moves declared tables, rows unchanged, to another database
(`python -m src.tools.source --url` loads the demo history that way).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import urllib.parse
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from src.pipeline.source.moments import TIME_FORMAT, moment_text, refuse_future

VERSION_ID = "version_id"
RECORDED_AT = "recorded_at"
ROW_HASH = "row_hash"  # SHA-256 of a version's values: how ingest tells a change
RESERVED = (VERSION_ID, RECORDED_AT, ROW_HASH)


class HistoryError(ValueError):
    """A table cannot be appended to the history as asked; the message names why."""


# The range of the ids a history keeps (BigInteger): SQLite's INTEGER and PostgreSQL's bigint.
INT64 = (-(2**63), 2**63 - 1)


def latest_query(table: str, id_column: str, columns: list[str]) -> str:
    """The point-in-time read of one history table, bound to `:as_of`.

    Per entity, the latest version recorded at or before :as_of (ties broken
    by the unique version id), ordered by the unique entity id: neither SQLite
    nor PostgreSQL promises any order without it. The window carries only
    (id, version_id); the chosen versions are then fetched by primary key.
    Plain SQL with a window function: runs on SQLite and PostgreSQL.
    `rn <= 1`, not `rn = 1`, though the rows are the same: PostgreSQL guesses
    that `rn = 1` keeps 0.5 % of the rows, and joined to another such read it
    then nests loops that take minutes; `rn <= 1` becomes the window's own stop
    condition, with the true row count.
    """
    selected = ", ".join(f"t.{name}" for name in [id_column, RECORDED_AT, *columns])
    return f"""
WITH latest AS (
    SELECT h.{VERSION_ID}, ROW_NUMBER() OVER (
        PARTITION BY h.{id_column} ORDER BY h.{RECORDED_AT} DESC, h.{VERSION_ID} DESC) AS rn
    FROM {table} AS h
    WHERE h.{RECORDED_AT} <= :as_of
)
SELECT {selected}
FROM latest AS l
JOIN {table} AS t ON t.{VERSION_ID} = l.{VERSION_ID}
WHERE l.rn <= 1
ORDER BY t.{id_column}
"""


def history_table(metadata: sa.MetaData, name: str, id_column: str, *columns: sa.Column) -> sa.Table:
    """Declare a history table: version id, entity id, recorded_at, row hash, then `columns`."""
    return sa.Table(
        name, metadata,
        sa.Column(VERSION_ID, sa.Integer, primary_key=True, autoincrement=False),
        sa.Column(id_column, sa.BigInteger, nullable=False),
        sa.Column(RECORDED_AT, sa.Text, nullable=False),
        sa.Column(ROW_HASH, sa.Text, nullable=False),
        *columns,
        sa.Index(f"{name}_by_recorded", id_column, RECORDED_AT),
    )


# A declared table's `info` key saying its version ids are NOT numbered in append
# order (a demo builder may shuffle them on purpose): gather then cannot tell a
# back-dated append from an original version and skips that one check.
SHUFFLED_VERSIONS = "shuffled_version_ids"


@dataclass(frozen=True)
class HistoryLayout:
    """How one declared table keeps its versions: what the contract check reads."""

    table: str
    version: str  # the single-column primary key: one number per version, unique in the table
    key: tuple[str, ...]  # the entity key: the columns before recorded_at in the table's by-recorded index
    in_append_order: bool = True  # version ids grow as versions are appended (ingest numbers them so)
    recorded_at: str = RECORDED_AT


def history_layout(table: sa.Table) -> HistoryLayout | None:
    """`table`'s history layout, or None if it is not a history table.

    A history table has a `recorded_at` column, a one-column primary key (the
    version id) and an index that ends in recorded_at, led by the entity key
    (history_table declares `<name>_by_recorded` so). The snapshot query's
    windows partition by that key and order by recorded_at.
    """
    primary = list(table.primary_key.columns)
    if RECORDED_AT not in table.c or len(primary) != 1:
        return None
    for index in sorted(table.indexes, key=lambda index: index.name or ""):
        names = [column.name for column in index.columns]
        if len(names) >= 2 and names[-1] == RECORDED_AT:
            return HistoryLayout(table.name, primary[0].name, tuple(names[:-1]),
                                 in_append_order=not table.info.get(SHUFFLED_VERSIONS, False))
    return None


def enforced_query(layout: HistoryLayout, backend: str) -> str | None:
    """A catalog query: does the database itself keep `layout`'s version ids unique, and which columns NOT NULL?

    One row: (1 or true if the version column is a one-column primary key or
    has a unique, not partial, index; the NOT NULL columns, comma-separated).
    What the database enforces, contract_query need not search for: the
    duplicate search (a GROUP BY over every version) was nearly all of the
    check's cost, 0.3 s on SQLite and 0.7 s on PostgreSQL for the example's 690k
    versions of its entity table, and PostgreSQL's NULL scan another 0.15 s. None where the
    backend has no such query here: then everything is searched.
    """
    table, version = layout.table, layout.version
    if backend == "sqlite":
        # An INTEGER PRIMARY KEY is the rowid: never NULL, though table_info does not say NOT NULL.
        return f"""
SELECT EXISTS (
    SELECT 1 FROM pragma_table_info('{table}')
    WHERE pk = 1 AND name = '{version}' AND (SELECT count(*) FROM pragma_table_info('{table}') WHERE pk > 0) = 1
) OR EXISTS (
    SELECT 1 FROM pragma_index_list('{table}') AS il JOIN pragma_index_info(il.name) AS ii
    WHERE il."unique" = 1 AND il.partial = 0
    GROUP BY il.name HAVING count(*) = 1 AND max(ii.name) = '{version}'
), (
    SELECT group_concat(name, ',') FROM pragma_table_info('{table}')
    WHERE "notnull" = 1 OR (pk = 1 AND upper(type) = 'INTEGER'
        AND (SELECT count(*) FROM pragma_table_info('{table}') WHERE pk > 0) = 1)
)
"""
    if backend == "postgresql":
        return f"""
SELECT EXISTS (
    SELECT 1 FROM pg_index AS i JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass('{table}') AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
        AND a.attname = '{version}'
), (
    SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute
    WHERE attrelid = to_regclass('{table}') AND attnotnull AND attnum > 0 AND NOT attisdropped
)
"""
    return None


def contract_query(layout: HistoryLayout, duplicates: bool = True,
                   not_null: frozenset[str] = frozenset()) -> str | None:
    """One query that returns the first row breaking the history contract in `layout`'s table, or none.

    Checked: the entity key, version id and recorded_at are NOT NULL; the
    version id is unique in the table; and, where version ids are numbered in
    append order, version order agrees with recorded_at order per entity (no
    version recorded before one it follows: a back-dated append). That holds
    exactly when, ordered by (recorded_at, version id), each entity's version
    ids ascend: the order the by-recorded index already has (SQLite scans it,
    no sort). Plain SQL: SQLite and PostgreSQL. What the database enforces
    (enforced_query) is left out: `duplicates=False` when it keeps version
    ids unique, `not_null` the columns it keeps NOT NULL. None when nothing
    is left to check. Columns: problem, the key columns (for a duplicate: the
    lowest holding it), version, recorded_at (for a duplicate: how many rows
    hold it), and the version before it in recorded_at order (else the
    version again).
    """
    key, version, recorded = layout.key, layout.version, layout.recorded_at
    checked = [name for name in (*key, version, recorded) if name not in not_null]
    if not checked and not layout.in_append_order and not duplicates:
        return None
    nulls = " OR ".join(f"o.{name} IS NULL" for name in checked) or "1 = 0"
    cases = " ".join(f"WHEN o.{name} IS NULL THEN 'null {name}'" for name in checked)
    problem = f"CASE {cases} ELSE 'order' END" if checked else "'order'"
    selected = ", ".join(f"o.{name}" for name in key)
    if layout.in_append_order:
        keys = ", ".join(f"h.{name}" for name in key)
        rows = f"""(
        SELECT {keys}, h.{version}, h.{recorded},
            LAG(h.{version}) OVER (PARTITION BY {keys} ORDER BY h.{recorded}, h.{version}) AS previous_version
        FROM {layout.table} AS h
    ) AS o"""
        broken = f"{nulls} OR o.previous_version >= o.{version}"
        previous = "o.previous_version"
    else:
        rows, broken, previous = f"{layout.table} AS o", nulls, f"o.{version}"
    # Aggregates, not NULLs: PostgreSQL types a NULL in a subquery as text, and UNION then refuses it.
    lowest = ", ".join(f"MIN(d.{name}) AS {name}" for name in key)
    first_broken = f"""
SELECT * FROM (
    SELECT {problem} AS problem, {selected}, o.{version} AS version, o.{recorded} AS recorded,
        {previous} AS previous_version
    FROM {rows}
    WHERE {broken}
    ORDER BY CASE WHEN {nulls} THEN 0 ELSE 1 END, {selected}, o.{version}
    LIMIT 1
) AS first_broken
"""
    first_duplicate = f"""
SELECT * FROM (
    SELECT 'duplicate' AS problem, {lowest}, d.{version} AS version, CAST(COUNT(*) AS TEXT) AS recorded,
        MIN(d.{version}) AS previous_version
    FROM {layout.table} AS d
    WHERE d.{version} IS NOT NULL
    GROUP BY d.{version}
    HAVING COUNT(*) > 1
    ORDER BY d.{version}
    LIMIT 1
) AS first_duplicate
"""
    if not checked and not layout.in_append_order:
        return first_duplicate
    return first_broken + ("UNION ALL" + first_duplicate if duplicates else "")


def moment_query(layout: HistoryLayout, version: int) -> str:
    """The recorded_at of one version (for the message of an order breach: the check itself does not carry it)."""
    return f"SELECT {layout.recorded_at} FROM {layout.table} WHERE {layout.version} = {int(version)}"


def contract_breach(layout: HistoryLayout, row, previous_recorded: str | None = None) -> str:
    """The one line that says how `row` (from contract_query) breaks the contract.

    For an order breach, `previous_recorded`: when the version before it in
    recorded_at order (the later-appended one, moment_query) was recorded.
    """
    problem, *keys = row[:1 + len(layout.key)]
    version, recorded, previous = row[1 + len(layout.key):]
    where = ", ".join(f"{name}={'NULL' if value is None else repr(value)}"
                      for name, value in zip(layout.key, keys, strict=True))
    head = f"source table {layout.table!r}"
    if problem == "duplicate":
        lowest = f" ({where} among them)" if len(layout.key) == 1 else ""
        return (f"{head}: {layout.version} {version} is held by {recorded} rows{lowest}; a version id must be "
                "unique (make it the table's primary key)")
    if problem.startswith("null "):
        column = problem.removeprefix("null ")
        return (f"{head}, column {column!r}, {where}, {layout.version}={'NULL' if version is None else version}: "
                f"NULL breaks the history contract ({', '.join((*layout.key, layout.version, layout.recorded_at))} "
                "must all be set)")
    return (f"{head}, {where}: {layout.version} {previous} is recorded at {previous_recorded}, before "
            f"{layout.version} {version} (recorded at {recorded}) which precedes it; a history is appended in "
            "time (a later version must not be dated earlier), or snapshots already taken change")


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
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def ingest(frame: pd.DataFrame, url: str, table: str, id_column: str,
           recorded_at: str | None = None, recorded_at_column: str | None = None,
           now: dt.datetime | None = None) -> IngestResult:
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
        raise HistoryError(f"{id_column}: id {ids.iloc[out_of_range[0]]} (row {out_of_range[0]}) does not fit a "
                           f"64-bit integer ({INT64[0]} to {INT64[1]}): the history's ids are BIGINT")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise HistoryError(f"{id_column}: duplicate ids {sorted(set(duplicated.tolist()))[:5]}")

    if recorded_at_column is not None:
        if recorded_at_column not in frame.columns:
            raise HistoryError(f"no recorded-at column {recorded_at_column!r}")
        moments = [_moment(value, recorded_at_column) for value in frame[recorded_at_column]]
        frame = frame.drop(columns=[recorded_at_column])
    else:
        stamp = _moment(recorded_at, "recorded_at") if recorded_at is not None else \
            (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime(TIME_FORMAT)
        moments = [stamp] * len(frame)
    latest = max(range(len(moments)), key=moments.__getitem__)
    try:
        refuse_future(moments[latest], now)
    except ValueError as error:
        where = f" (row {latest}, {id_column}={frame[id_column].iloc[latest]})" if recorded_at_column else ""
        raise HistoryError(f"{recorded_at_column or 'recorded_at'}{where} {error}; a version dated in the future "
                           "would also make every later ingest look back-dated") from None
    data_columns = [name for name in frame.columns if name != id_column]
    # Appended in id order, so version ids follow a fixed order whatever the file's.
    order = np.argsort(frame[id_column].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    moments = [moments[i] for i in order]
    rows = [[_plain(value) for value in record] for record in frame[data_columns].itertuples(index=False)]
    hashes = [row_hash(dict(zip(data_columns, row, strict=True))) for row in rows]

    try:
        engine = _transactional(sa.create_engine(url))
    except (sa.exc.ArgumentError, ImportError) as error:
        raise HistoryError(_redacted(f"cannot use the source URL: {type(error).__name__}: {error}", url)) from None
    try:
        with engine.begin() as connection:
            target = _table(connection, table, id_column, frame, data_columns)
            latest = _latest(connection, target, id_column)
            newest = connection.execute(sa.select(sa.func.max(target.c[RECORDED_AT]))).scalar()
            next_id = (connection.execute(sa.select(sa.func.max(target.c[VERSION_ID]))).scalar() or 0) + 1
            appended = []
            for entity, moment, digest, values in zip(frame[id_column].tolist(), moments, hashes, rows, strict=True):
                if latest.get(int(entity)) == digest:
                    continue
                if newest is not None and moment < newest:
                    raise HistoryError(
                        f"{id_column}={entity}: recorded_at {moment} is before the history's latest "
                        f"version ({newest}); appending it would change snapshots already taken"
                    )
                appended.append({VERSION_ID: next_id + len(appended), id_column: int(entity),
                                 RECORDED_AT: moment, ROW_HASH: digest, **dict(zip(data_columns, values, strict=True))})
            if appended:
                connection.execute(target.insert(), appended)
    except sa.exc.DBAPIError as error:
        shown = engine.url.render_as_string(hide_password=True)
        raise HistoryError(_redacted(f"cannot write to the source {shown}: {error.orig}", url)) from None
    except OverflowError as error:  # a value the driver cannot store (an integer past 64 bits): nothing written
        raise HistoryError(f"{table}: a value does not fit the database's types ({error}); nothing was "
                           "appended") from None
    finally:
        engine.dispose()
    return IngestResult(table, len(appended), len(frame) - len(appended),
                        moments[0] if recorded_at_column is None else None)


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


def copy_tables(source_url: str, target_url: str, tables: sa.MetaData, batch_rows: int = 100_000) -> dict[str, int]:
    """Copy the declared `tables` from one database to another, row for row; return row counts.

    Values are copied as they are, version ids and recorded_at included, so the
    point-in-time query reads the same rows at the target. The target must not
    hold any of the tables yet: a history is appended to, never overwritten.
    Everything happens in one transaction (PostgreSQL's DDL is transactional),
    so readers see no table or every table filled. Rows go in primary-key order,
    into PostgreSQL with COPY, elsewhere in batches of `batch_rows`.
    """
    source, target = _engine(source_url), _engine(target_url)
    counts = {}
    try:
        with source.connect() as reader, target.begin() as writer:
            _refuse_present(writer, tables)
            for table in tables.sorted_tables:
                writer.execute(CreateTable(table))
                rows = reader.execution_options(stream_results=True, yield_per=batch_rows).execute(
                    sa.select(table).order_by(*table.primary_key.columns))
                counts[table.name] = _write(writer, table, rows, batch_rows)
            # Indexes after the rows: one sort each instead of upkeep on every row.
            for table in tables.sorted_tables:
                for index in sorted(table.indexes, key=lambda index: index.name):
                    writer.execute(CreateIndex(index))
                if writer.dialect.name == "postgresql":
                    # Without statistics the planner guesses row counts, and a
                    # guess of "few" turns the snapshot's joins into nested loops.
                    writer.execute(sa.text(f"ANALYZE {writer.dialect.identifier_preparer.format_table(table)}"))
    except sa.exc.DBAPIError as error:
        message = _redacted(f"cannot copy the tables: {error.orig}", source_url)
        raise HistoryError(_redacted(message, target_url)) from None
    finally:
        source.dispose()
        target.dispose()
    return counts


def check_absent(url: str, tables: sa.MetaData) -> None:
    """Refuse, before any work, a target that already holds one of `tables` (as copy_tables would)."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            _refuse_present(connection, tables)
    except sa.exc.DBAPIError as error:
        raise HistoryError(_redacted(f"cannot reach {shown_url(url)}: {error.orig}", url)) from None
    finally:
        engine.dispose()


def _refuse_present(connection: sa.Connection, tables: sa.MetaData) -> None:
    inspector = sa.inspect(connection)
    present = [table.name for table in tables.sorted_tables if inspector.has_table(table.name)]
    if present:
        raise HistoryError(f"the target already has tables {present}: a history is never overwritten; "
                           "load into an empty database or schema")


def _engine(url: str) -> sa.Engine:
    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise HistoryError(_redacted(f"cannot use the URL: {type(error).__name__}: {error}", url)) from None


def _write(connection: sa.Connection, table: sa.Table, result: sa.CursorResult, batch_rows: int) -> int:
    count = 0
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        quote = connection.dialect.identifier_preparer
        columns = ", ".join(quote.quote(column.name) for column in table.columns)
        # COPY through the connection's own transaction: the rows commit or vanish with the tables.
        with connection.connection.driver_connection.cursor() as cursor, \
                cursor.copy(f"COPY {quote.format_table(table)} ({columns}) FROM STDIN") as copy:
            for rows in result.partitions(batch_rows):
                for row in rows:
                    copy.write_row(row)
                count += len(rows)
        return count
    names = [column.name for column in table.columns]
    for rows in result.partitions(batch_rows):
        connection.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])
        count += len(rows)
    return count


def shown_url(url: str) -> str:
    """`url` as safe to print: without its passwords, or nothing of it if it does not parse."""
    try:
        return _redacted(sa.engine.make_url(url).render_as_string(hide_password=True), url)
    except (sa.exc.ArgumentError, ValueError):
        return "<url>"


def _redacted(message: str, url: str) -> str:
    """`message` without the URL or its passwords: errors end up in terminals and CI logs.

    A password may sit in the user part (`user:secret@host`) or in a query
    parameter (`?password=secret`, libpq's `sslpassword`), plain or URL-encoded.
    """
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return message.replace(url, "<url>")  # not even parsed: any part of it may be the secret
    passwords = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if "password" in key.lower():
            passwords.extend([value] if isinstance(value, str) else value)
    # The raw text as written, in case its encoding differs from what quote() gives back.
    passwords += re.findall(r"(?i)[?&][^=&]*password[^=&]*=([^&#]*)", url)
    passwords += re.findall(r"^[^:/]+://[^:/@?]*:([^@/?]*)@", url)
    passwords = [password for password in passwords if password]
    secrets = {url} if passwords else set()  # a URL without a password is worth showing
    for password in passwords:
        secrets |= {password, urllib.parse.unquote_plus(password), urllib.parse.quote(password, safe=""),
                    urllib.parse.quote_plus(password)}
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _moment(value, column: str) -> str:
    try:
        return moment_text(pd.Timestamp(value).isoformat() if not isinstance(value, str) else value)
    except ValueError as error:
        raise HistoryError(f"{column}: {error}") from None


def _table(connection: sa.Connection, name: str, id_column: str, frame: pd.DataFrame,
           data_columns: list[str]) -> sa.Table:
    inspector = sa.inspect(connection)
    if not inspector.has_table(name):
        metadata = sa.MetaData()
        table = history_table(metadata, name, id_column,
                              *(sa.Column(column, _column_type(frame[column])) for column in data_columns))
        metadata.create_all(connection)
        return table
    present = [column["name"] for column in inspector.get_columns(name)]
    expected = [VERSION_ID, id_column, RECORDED_AT, ROW_HASH, *data_columns]
    if sorted(present) != sorted(expected):
        missing = [c for c in expected if c not in present]
        extra = [c for c in present if c not in expected]
        raise HistoryError(f"table {name!r} exists with other columns: "
                           + ", ".join(f"the {side} lacks {columns}" for side, columns
                                       in (("file", extra), ("table", missing)) if columns))
    return sa.Table(name, sa.MetaData(), autoload_with=connection)


def _latest(connection: sa.Connection, table: sa.Table, id_column: str) -> dict[int, str]:
    """Each entity's latest row hash (as of now: appends are compared with the present)."""
    ranked = sa.select(
        table.c[id_column], table.c[ROW_HASH],
        sa.func.row_number().over(partition_by=table.c[id_column],
                                  order_by=[table.c[RECORDED_AT].desc(), table.c[VERSION_ID].desc()]).label("rn"),
    ).subquery()
    result = connection.execute(sa.select(ranked.c[id_column], ranked.c[ROW_HASH]).where(ranked.c.rn == 1))
    return {int(entity): digest for entity, digest in result}
