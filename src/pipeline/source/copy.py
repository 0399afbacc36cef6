"""Copy declared tables from one database to another, rows unchanged: a history moves, never rewritten.

`python -m src.tools.source --url` loads the demo history into a database
server this way; the point-in-time query then reads the same rows there.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from src.pipeline.source.history import HistoryError
from src.pipeline.source.url import redacted, shown_url


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
                    sa.select(table).order_by(*table.primary_key.columns)
                )
                counts[table.name] = _copy_rows(writer, table, rows, batch_rows)
            # Indexes after the rows: one sort each instead of upkeep on every row.
            for table in tables.sorted_tables:
                for index in sorted(table.indexes, key=lambda index: index.name):
                    writer.execute(CreateIndex(index))
                if writer.dialect.name == "postgresql":
                    # Without statistics the planner guesses row counts, and a
                    # guess of "few" turns the snapshot's joins into nested loops.
                    writer.execute(sa.text(f"ANALYZE {writer.dialect.identifier_preparer.format_table(table)}"))
    except sa.exc.DBAPIError as error:
        message = redacted(f"cannot copy the tables: {error.orig}", source_url)
        raise HistoryError(redacted(message, target_url)) from None
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
        raise HistoryError(redacted(f"cannot reach {shown_url(url)}: {error.orig}", url)) from None
    finally:
        engine.dispose()


def _refuse_present(connection: sa.Connection, tables: sa.MetaData) -> None:
    inspector = sa.inspect(connection)
    present = [table.name for table in tables.sorted_tables if inspector.has_table(table.name)]
    if present:
        raise HistoryError(
            f"the target already has tables {present}: a history is never overwritten; "
            "load into an empty database or schema"
        )


def _engine(url: str) -> sa.Engine:
    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise HistoryError(redacted(f"cannot use the URL: {type(error).__name__}: {error}", url)) from None


def _copy_rows(connection: sa.Connection, table: sa.Table, result: sa.CursorResult, batch_rows: int) -> int:
    count = 0
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        quote = connection.dialect.identifier_preparer
        columns = ", ".join(quote.quote(column.name) for column in table.columns)
        # COPY through the connection's own transaction: the rows commit or vanish with the tables.
        with (
            connection.connection.driver_connection.cursor() as cursor,
            cursor.copy(f"COPY {quote.format_table(table)} ({columns}) FROM STDIN") as copy,
        ):
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
