"""Stage `gather`: a point-in-time snapshot of the source database.

Runs the adapter's point-in-time query: every record as it was known at
`gather.as_of` (never "now"), ordered by the unique id, streamed in chunks into
one Parquet file with the adapter's explicit schema. However much the source
has grown or been corrected since `as_of`, the snapshot's bytes stay the same.

SQLite and PostgreSQL sources are read through their ADBC drivers, straight
into Arrow columns; any other SQLAlchemy URL is read row by row. Whatever the
driver, every value is checked against the adapter's declared types and
domains (src/pipeline/validate.py) before a byte is written.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from src.pipeline import config, files
from src.pipeline.adapter import Adapter
from src.pipeline.dataset import load_adapter
from src.pipeline.history import (
    _redacted,
    contract_breach,
    contract_query,
    enforced_query,
    history_layout,
    moment_query,
    shown_url,
)
from src.pipeline.params import ParamsError, load_params
from src.pipeline.validate import SourceValueError, refuse, to_snapshot

# Backends read through an Arrow-native (ADBC) driver, and the module of each.
ARROW_DRIVERS = {"sqlite": "adbc_driver_sqlite.dbapi", "postgresql": "adbc_driver_postgresql.dbapi"}
# How each backend's ADBC driver writes a bound parameter (SQLAlchemy's names for
# the styles), and the SQLAlchemy dialect that rewrites :name into it.
PARAMSTYLES = {"sqlite": "qmark", "postgresql": "numeric_dollar"}
DIALECTS = {"sqlite": sqlite.dialect, "postgresql": postgresql.dialect}
# The SQLite driver types each column from the first batch it reads.
SQLITE_BATCH_ROWS = "adbc.sqlite.query.batch_rows"


# What to do about a driver's cause, by the words it says it in (SQLite's own messages).
HINTS = {
    "database is locked": "another process holds a lock on the file (an open write transaction, e.g. "
                          "BEGIN EXCLUSIVE); run gather again once it has committed or ended",
    "file is not a database": "the file is not a SQLite database: point the source URL at the source's "
                              ".sqlite file; `make source` builds the demo one",
    "unable to open database file": "the file cannot be opened: check its permissions and its folder's",
}


class SourceError(RuntimeError):
    """The source cannot be read as the snapshot needs it."""


class HistoryContractError(SourceValueError):
    """A source table breaks the history contract (src/pipeline/history.py): the snapshot would not be a
    function of as_of alone. The message names the table, the entity and the versions."""


@dataclass(frozen=True)
class Source:
    """A parsed source URL: what to connect to, and how to name it without its password."""

    url: str
    parsed: sa.URL
    shown: str  # safe to print
    sqlite_path: Path | None  # the existing file of a SQLite source

    @property
    def backend(self) -> str:
        return self.parsed.get_backend_name()

    def error(self, text: str) -> SourceError:
        # A driver may quote its connection string (password included) back,
        # over several lines: one line, never a password.
        hints = [hint for cause, hint in HINTS.items() if cause in text]
        line = " ".join(text.split()) + "".join(f" ({hint})" for hint in hints)
        return SourceError(_redacted(line, self.url))


def locate(url: str) -> Source:
    """Parse `url`; a missing SQLite file is an error, not a new empty database.

    No error repeats a password from `url`: messages end up in terminals and CI logs.
    """
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        # Not quoted back: any part of an unparsed URL may be the password.
        raise SourceError(f"the source URL is not a database URL; set {config.SOURCE_URL_ENV} to one like "
                          "postgresql://user@host/database or sqlite:///path/to/source.sqlite") from None
    shown = shown_url(url)
    sqlite_path = None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and Path(database).is_dir():
            raise SourceError(_redacted(
                f"the source database {database} is a directory, not a SQLite file: point the source URL at "
                "the .sqlite file (the demo's is data/source/source.sqlite)", url))
        if not database or database == ":memory:" or not Path(database).is_file():
            raise SourceError(_redacted(
                f"source database not found: {database or shown} (build the demo with `make source`, "
                "or ingest a table: `python -m src.tools.ingest`)", url))
        sqlite_path = Path(database).resolve()
    return Source(url, parsed, shown, sqlite_path)


def open_source(url: str, scramble: bool = False) -> sa.Engine:
    """A SQLAlchemy engine for `url` (the row-by-row path, and tools that want SQL rows).

    `scramble` turns on SQLite's reverse_unordered_selects: any code that
    leans on an unspecified row order then gets another order (`make verify`).
    """
    source = locate(url)
    target = url
    if source.sqlite_path is not None:
        # Read-only: a snapshot must never write to the source.
        target = f"sqlite:///file:{source.sqlite_path}?mode=ro&uri=true"
    try:
        engine = sa.create_engine(target)
    except Exception as error:  # bad URL or missing driver
        raise source.error(f"cannot use source URL {source.shown}: {error}") from None
    if scramble and engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _reverse(connection, _record):
            connection.execute("PRAGMA reverse_unordered_selects = ON")
    return engine


@contextlib.contextmanager
def arrow_connection(url: str, scramble: bool = False) -> Iterator:
    """An ADBC (DB-API) connection to a SQLite or PostgreSQL `url`; SQLite read-only.

    `scramble`: as open_source's. PostgreSQL has no such switch; it has no
    promised order either, and the snapshot query's ORDER BY is what counts.
    """
    source = locate(url)
    if source.backend not in ARROW_DRIVERS:
        raise SourceError(f"no Arrow-native driver for {source.backend} sources ({source.shown})")
    try:
        driver = importlib.import_module(ARROW_DRIVERS[source.backend])
    except ImportError:
        package = ARROW_DRIVERS[source.backend].split(".")[0].replace("_", "-")
        raise SourceError(f"the {package} package is missing: install the project's requirements "
                          "(`make setup`)") from None
    if source.sqlite_path is not None:
        # Read-only: a snapshot must never write to the source.
        target = f"{source.sqlite_path.as_uri()}?mode=ro"
    else:
        # libpq takes the URL as is, less SQLAlchemy's "+driver" part.
        target = source.parsed.set(drivername=source.backend).render_as_string(hide_password=False)
    try:
        connection = driver.connect(target)
    except Exception as error:  # adbc_driver_manager.Error: refused, unknown host, bad password, ...
        raise source.error(f"cannot connect to the source {source.shown}: {error}") from None
    try:
        if source.backend == "sqlite":
            # The driver reports any failure to read the schema as "not found" (a
            # locked file, or one that is not SQLite, would read as missing tables):
            # read it once here, so that the driver's own cause is what is reported.
            with connection.cursor() as cursor:
                try:
                    cursor.execute("SELECT count(*) FROM sqlite_master")
                    cursor.fetchall()
                except Exception as error:  # adbc_driver_manager.Error
                    cause = str(error).split("\nquery:")[0]
                    raise source.error(f"cannot read the source {source.shown}: {cause}") from None
        if scramble and source.backend == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA reverse_unordered_selects = ON")
                cursor.execute("PRAGMA reverse_unordered_selects")
                if cursor.fetchone() != (1,):
                    raise SourceError("SQLite did not turn on reverse_unordered_selects: cannot scramble")
        yield connection
    finally:
        connection.close()


def check_source(present: dict[str, list[str]], declared: sa.MetaData) -> None:
    """Name every table or column the snapshot query needs but the source lacks.

    `present`: the source's tables (of those declared) and their columns; a
    missing table is absent from it.
    """
    problems = []
    for table, columns in ((t.name, [c.name for c in t.columns]) for t in declared.sorted_tables):
        if table not in present:
            problems.append(f"table {table!r} is missing")
            continue
        absent = [column for column in columns if column not in present[table]]
        if absent:
            problems.append(f"table {table!r} lacks columns {absent}")
    if problems:
        raise SourceError("the source does not match the snapshot query: " + "; ".join(problems))


def check_history(declared: sa.MetaData, first_row, backend: str) -> None:
    """Refuse a source whose history tables break the contract, naming the first offender.

    `first_row(sql)`: runs one query on the source and returns its first row or
    None. One query per history table (history.contract_query), before the
    snapshot query: a NULL key, a duplicate version id or a version recorded
    before one it follows would otherwise change the snapshot silently.
    """
    for table in declared.sorted_tables:
        layout = history_layout(table)
        if layout is None:
            continue
        catalog = enforced_query(layout, backend)
        unique, not_null = first_row(catalog) if catalog is not None else (False, None)
        query = contract_query(layout, duplicates=not unique, not_null=frozenset((not_null or "").split(",")))
        row = first_row(query) if query is not None else None
        if row is None:
            continue
        row = tuple(row)
        moment = None
        if row[0] == "order":
            found = first_row(moment_query(layout, row[-1]))
            moment = found[0] if found is not None else None
        raise HistoryContractError(contract_breach(layout, row, moment))


def _arrow_first_row(connection, source: Source):
    def first_row(sql: str):
        with connection.cursor() as cursor:
            try:
                cursor.execute(sql)
                return cursor.fetchone()
            except Exception as error:  # adbc_driver_manager.Error
                raise source.error(f"cannot check the source's history: {error}") from None
    return first_row


def _arrow_columns(connection, declared: sa.MetaData) -> dict[str, list[str]]:
    import adbc_driver_manager

    present = {}
    for table in declared.sorted_tables:
        try:
            present[table.name] = connection.adbc_get_table_schema(table.name).names
        except adbc_driver_manager.ProgrammingError:  # NOT_FOUND
            continue
    return present


def _sql_columns(connection: sa.Connection, declared: sa.MetaData) -> dict[str, list[str]]:
    inspector = sa.inspect(connection)
    tables = set(inspector.get_table_names())
    return {table.name: [column["name"] for column in inspector.get_columns(table.name)]
            for table in declared.sorted_tables if table.name in tables}


def bind(query: str, backend: str, parameters: dict[str, object]) -> tuple[str, tuple]:
    """`query` with its :name parameters in the driver's own style, and their values in order.

    SQLAlchemy's compiler does the rewriting (a `::` cast stays as written; a
    literal colon before a name is written `\\:`), so :as_of used three times
    becomes ?, ?, ? on SQLite and $1 (once) on PostgreSQL.
    """
    compiled = sa.text(query).compile(dialect=DIALECTS[backend](paramstyle=PARAMSTYLES[backend]))
    return str(compiled), tuple(parameters[name] for name in compiled.positiontup)


class _TypedFromFirstBatch(Exception):
    """The SQLite driver typed a column from its first batch, and a later batch disagreed."""


def read_arrow(url: str, adapter: Adapter, as_of: str, chunk_rows: int, scramble: bool = False) -> Iterator[pa.Table]:
    """The point-in-time query's rows through the ADBC driver, as checked snapshot tables."""
    source = locate(url)
    sql, parameters = bind(adapter.snapshot_query, source.backend, {"as_of": as_of})
    with arrow_connection(url, scramble=scramble) as connection:
        check_source(_arrow_columns(connection, adapter.source_tables), adapter.source_tables)
        check_history(adapter.source_tables, _arrow_first_row(connection, source), source.backend)
        with connection.cursor() as cursor:
            if source.backend == "sqlite":
                cursor.adbc_statement.set_options(**{SQLITE_BATCH_ROWS: str(chunk_rows)})
            try:
                cursor.execute(sql, parameters)
                reader = cursor.fetch_record_batch()
            except Exception as error:  # adbc_driver_manager.Error
                raise source.error(f"cannot read the source: {error}") from None
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except OSError as error:
                    if "Type mismatch" in str(error):
                        raise _TypedFromFirstBatch(str(error)) from None
                    raise source.error(f"cannot read the source: {error}") from None
                yield to_snapshot(pa.Table.from_batches([batch]), adapter)


def read_rows(url: str, adapter: Adapter, as_of: str, chunk_rows: int, scramble: bool = False) -> Iterator[pa.Table]:
    """The point-in-time query's rows through SQLAlchemy, `chunk_rows` at a time, as checked snapshot tables."""
    source = locate(url)
    engine = open_source(url, scramble=scramble)
    try:
        with engine.connect() as connection:
            check_source(_sql_columns(connection, adapter.source_tables), adapter.source_tables)
            check_history(adapter.source_tables, lambda sql: connection.execute(sa.text(sql)).first(),
                          connection.dialect.name)
            result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                sa.text(adapter.snapshot_query), {"as_of": as_of})
            columns = list(result.keys())
            for rows in result.partitions(chunk_rows):
                yield to_snapshot(rows_to_arrow(columns, rows, adapter), adapter)
    except sa.exc.DBAPIError as error:
        raise source.error(f"cannot read the source {source.shown}: {error.orig}") from None
    finally:
        engine.dispose()


def rows_to_arrow(columns: list[str], rows: list, adapter: Adapter) -> pa.Table:
    """Driver rows as Arrow columns of the types their values have (no pandas frame in between).

    A column mixing text and numbers has no Arrow type: it is refused here,
    naming its first value of another kind than the column's first value.
    """
    values = dict(zip(columns, zip(*rows, strict=True), strict=True)) if rows else {name: () for name in columns}
    arrays = {}
    for name in columns:
        try:
            arrays[name] = pa.array(values[name], from_pandas=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            kinds = [(index, isinstance(value, (str, bytes))) for index, value in enumerate(values[name])
                     if value is not None]
            index = next((index for index, textual in kinds if textual != kinds[0][1]), kinds[-1][0])
            entity = values[adapter.id][index] if adapter.id in values else None
            raise refuse(adapter, name, entity, values[name][index],
                         "mixes text and numbers in one column") from None
    return pa.table(arrays)


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
                raise SourceError(f"the snapshot query's {adapter.id} values are not unique and ascending: "
                                  f"it must end with ORDER BY {adapter.id}, and {adapter.id} must be unique")
            last = ids[-1]
        yield table
    if empty:
        raise SourceError(f"the snapshot at as_of={as_of} is empty: nothing was recorded by then")


def gather(adapter: Adapter, url: str, as_of: str, chunk_rows: int, output: Path, scramble: bool = False,
           arrow_native: bool | None = None) -> int:
    """Write the snapshot at `as_of` to `output`; return its row count.

    `arrow_native`: read through ADBC (True) or SQLAlchemy rows (False);
    None picks ADBC where the backend has a driver.
    """
    source = locate(url)
    if arrow_native is None:
        arrow_native = source.backend in ARROW_DRIVERS
    if scramble:
        # In the log of `make verify`'s scramble run: the variant reached the stage.
        effect = ("SQLite returns unordered rows in reverse" if source.backend == "sqlite"
                  else f"no effect on {source.backend}: only SQLite can reverse unordered rows")
        print(f"gather: {config.SCRAMBLE_ENV}=1: {effect}")
    if arrow_native:
        try:
            return _write(read_arrow(url, adapter, as_of, chunk_rows, scramble), adapter, as_of, chunk_rows, output)
        except _TypedFromFirstBatch as error:
            # The same values, read row by row, give the same bytes (or name the bad
            # value). On stdout: stderr is for the one line that says why a run failed.
            print(f"gather: the SQLite driver typed a column from its first batch ({error}); "
                  "reading row by row instead")
    return _write(read_rows(url, adapter, as_of, chunk_rows, scramble), adapter, as_of, chunk_rows, output)


def _write(tables: Iterator[pa.Table], adapter: Adapter, as_of: str, chunk_rows: int, output: Path) -> int:
    # Row groups of exactly chunk_rows whatever sizes the driver delivered
    # (PostgreSQL's gives one batch): featurize's streaming writer, reused.
    with files.parquet_stream(output, adapter.snapshot_schema, row_group_rows=chunk_rows) as stream:
        for table in _ordered(tables, adapter, as_of):
            stream.write(table)
    return stream.rows


def scramble_requested() -> bool:
    """Whether this run should hand unordered SELECTs another order (`make verify`'s scramble variant)."""
    return os.environ.get(config.SCRAMBLE_ENV) == "1"


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
        scramble=scramble_requested(),
    )
    print(f"gather: {rows} {adapter.entity} as of {params.gather.as_of} -> {config.SNAPSHOT.relative_to(config.ROOT)} "
          f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, SourceError, SourceValueError, files.DiskFullError) as error:
        sys.exit(f"gather: error: {error}")
