"""The point-in-time query's rows, read from the source as checked snapshot tables.

SQLite and PostgreSQL sources are read through their ADBC drivers, straight
into Arrow columns (read_arrow); any other SQLAlchemy URL is read row by row
(read_rows). Both first check that the declared tables and columns are there
and that the history keeps its contract, and both hand every chunk to
validate.to_snapshot, so whatever the driver, every value is checked before a
byte is written. Sources are opened read-only: a snapshot never writes to them.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from src.pipeline.adapter import Adapter
from src.pipeline.source.contract import check_history
from src.pipeline.source.scramble import scramble_arrow, scramble_engine
from src.pipeline.source.url import SourceError, SourceURL
from src.pipeline.source.validate import refuse, to_snapshot

# Backends read through an Arrow-native (ADBC) driver, and the module of each.
ARROW_DRIVERS = {"sqlite": "adbc_driver_sqlite.dbapi", "postgresql": "adbc_driver_postgresql.dbapi"}
# How each backend's ADBC driver writes a bound parameter (SQLAlchemy's names for
# the styles), and the SQLAlchemy dialect that rewrites :name into it.
PARAMSTYLES = {"sqlite": "qmark", "postgresql": "numeric_dollar"}
DIALECTS = {"sqlite": sqlite.dialect, "postgresql": postgresql.dialect}
# The SQLite driver types each column from the first batch it reads.
SQLITE_BATCH_ROWS = "adbc.sqlite.query.batch_rows"


class TypedFromFirstBatch(Exception):
    """The SQLite driver typed a column from its first batch, and a later batch disagreed."""


def open_source(source: SourceURL, scramble: bool = False) -> sa.Engine:
    """A SQLAlchemy engine for `source` (the row-by-row path, and tools that want SQL rows).

    `scramble`: SQLite hands unordered SELECTs back in reverse (scramble.py).
    """
    target: str | sa.URL = source.url
    if source.sqlite_path is not None:
        # Read-only: a snapshot must never write to the source.
        target = f"sqlite:///file:{source.sqlite_path}?mode=ro&uri=true"
    elif source.parsed.drivername == "postgresql":
        target = source.parsed.set(drivername="postgresql+psycopg")  # the locked driver (psycopg 3), not psycopg2
    try:
        engine = sa.create_engine(target)
    except Exception as error:  # bad URL or missing driver
        raise source.error(f"cannot use source URL {source.shown}: {error}") from None
    if scramble:
        scramble_engine(engine)
    return engine


def _arrow_driver(backend: str):
    """The DB-API module of `backend`'s ADBC driver (one of ARROW_DRIVERS)."""
    try:
        return importlib.import_module(ARROW_DRIVERS[backend])
    except ImportError:
        package = ARROW_DRIVERS[backend].split(".")[0].replace("_", "-")
        raise SourceError(
            f"the {package} package is missing: install the project's requirements (`make setup`)"
        ) from None


def _check_readable(connection, source: SourceURL) -> None:
    """Read SQLite's schema once, so that a locked or foreign file reports the driver's own cause.

    The driver reports any failure to read the schema as "not found": a locked
    file, or one that is not SQLite, would read as missing tables.
    """
    with connection.cursor() as cursor:
        try:
            cursor.execute("SELECT count(*) FROM sqlite_master")
            cursor.fetchall()
        except Exception as error:  # adbc_driver_manager.Error
            cause = str(error).split("\nquery:")[0]
            raise source.error(f"cannot read the source {source.shown}: {cause}") from None


@contextlib.contextmanager
def arrow_connection(source: SourceURL, scramble: bool = False) -> Iterator:
    """An ADBC (DB-API) connection to a SQLite or PostgreSQL `source`; SQLite read-only."""
    if source.backend not in ARROW_DRIVERS:
        raise SourceError(f"no Arrow-native driver for {source.backend} sources ({source.shown})")
    driver = _arrow_driver(source.backend)
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
            _check_readable(connection, source)
            if scramble:
                scramble_arrow(connection)
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


def _arrow_first_row(connection, source: SourceURL) -> Callable:
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
    return {
        table.name: [column["name"] for column in inspector.get_columns(table.name)]
        for table in declared.sorted_tables
        if table.name in tables
    }


def bind(query: str, backend: str, parameters: dict[str, object]) -> tuple[str, tuple]:
    """`query` with its :name parameters in the driver's own style, and their values in order.

    SQLAlchemy's compiler does the rewriting (a `::` cast stays as written; a
    literal colon before a name is written `\\:`), so :as_of used three times
    becomes ?, ?, ? on SQLite and $1 (once) on PostgreSQL.
    """
    compiled = sa.text(query).compile(dialect=DIALECTS[backend](paramstyle=PARAMSTYLES[backend]))
    return str(compiled), tuple(parameters[name] for name in compiled.positiontup)


def _batches(cursor, source: SourceURL) -> Iterator[pa.RecordBatch]:
    """The executed query's record batches; a type the first batch fixed and a later one broke is told apart."""
    try:
        reader = cursor.fetch_record_batch()
    except Exception as error:  # adbc_driver_manager.Error
        raise source.error(f"cannot read the source: {error}") from None
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except OSError as error:
            if "Type mismatch" in str(error):
                raise TypedFromFirstBatch(str(error)) from None
            raise source.error(f"cannot read the source: {error}") from None


def read_arrow(
    source: SourceURL, adapter: Adapter, as_of: str, chunk_rows: int, scramble: bool = False
) -> Iterator[pa.Table]:
    """The point-in-time query's rows through the ADBC driver, as checked snapshot tables."""
    sql, parameters = bind(adapter.snapshot_query, source.backend, {"as_of": as_of})
    with arrow_connection(source, scramble=scramble) as connection:
        check_source(_arrow_columns(connection, adapter.source_tables), adapter.source_tables)
        check_history(adapter.source_tables, _arrow_first_row(connection, source), source.backend)
        with connection.cursor() as cursor:
            if source.backend == "sqlite":
                cursor.adbc_statement.set_options(**{SQLITE_BATCH_ROWS: str(chunk_rows)})
            try:
                cursor.execute(sql, parameters)
            except Exception as error:  # adbc_driver_manager.Error
                raise source.error(f"cannot read the source: {error}") from None
            for batch in _batches(cursor, source):
                yield to_snapshot(pa.Table.from_batches([batch]), adapter)


def read_rows(
    source: SourceURL, adapter: Adapter, as_of: str, chunk_rows: int, scramble: bool = False
) -> Iterator[pa.Table]:
    """The point-in-time query's rows through SQLAlchemy, `chunk_rows` at a time, as checked snapshot tables."""
    engine = open_source(source, scramble=scramble)
    try:
        with engine.connect() as connection:
            check_source(_sql_columns(connection, adapter.source_tables), adapter.source_tables)
            check_history(
                adapter.source_tables, lambda sql: connection.execute(sa.text(sql)).first(), connection.dialect.name
            )
            result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                sa.text(adapter.snapshot_query), {"as_of": as_of}
            )
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
            kinds = [
                (index, isinstance(value, (str, bytes)))
                for index, value in enumerate(values[name])
                if value is not None
            ]
            index = next((index for index, textual in kinds if textual != kinds[0][1]), kinds[-1][0])
            entity = values[adapter.id][index] if adapter.id in values else None
            raise refuse(adapter, name, entity, values[name][index], "mixes text and numbers in one column") from None
    return pa.table(arrays)
