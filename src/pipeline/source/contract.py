"""The check that a source keeps the history contract (history.py), run before every snapshot query.

Per declared history table, one catalog query (what the database enforces
itself) and one query for the first row that breaks the contract: a NULL key,
a duplicate version id, or a version recorded before one it follows. Plain SQL
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from src.pipeline.source.history import RECORDED_AT, SHUFFLED_VERSIONS
from src.pipeline.source.validate import SourceValueError


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
            return HistoryLayout(
                table.name,
                primary[0].name,
                tuple(names[:-1]),
                in_append_order=not table.info.get(SHUFFLED_VERSIONS, False),
            )
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


def contract_query(
    layout: HistoryLayout, duplicates: bool = True, not_null: frozenset[str] = frozenset()
) -> str | None:
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
    first_duplicate = _first_duplicate(layout)
    if not checked and not layout.in_append_order:
        return first_duplicate
    return first_broken + ("UNION ALL" + first_duplicate if duplicates else "")


def _first_duplicate(layout: HistoryLayout) -> str:
    """The query for the lowest version id that more than one row holds (with how many, and the lowest key)."""
    version = layout.version
    # Aggregates, not NULLs: PostgreSQL types a NULL in a subquery as text, and UNION then refuses it.
    lowest = ", ".join(f"MIN(d.{name}) AS {name}" for name in layout.key)
    return f"""
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


def moment_query(layout: HistoryLayout, version: int) -> str:
    """The recorded_at of one version (for the message of an order breach: the check itself does not carry it)."""
    return f"SELECT {layout.recorded_at} FROM {layout.table} WHERE {layout.version} = {int(version)}"


def contract_breach(layout: HistoryLayout, row, previous_recorded: str | None = None) -> str:
    """The one line that says how `row` (from contract_query) breaks the contract.

    For an order breach, `previous_recorded`: when the version before it in
    recorded_at order (the later-appended one, moment_query) was recorded.
    """
    problem, *keys = row[: 1 + len(layout.key)]
    version, recorded, previous = row[1 + len(layout.key) :]
    where = ", ".join(
        f"{name}={'NULL' if value is None else repr(value)}" for name, value in zip(layout.key, keys, strict=True)
    )
    head = f"source table {layout.table!r}"
    if problem == "duplicate":
        lowest = f" ({where} among them)" if len(layout.key) == 1 else ""
        return (
            f"{head}: {layout.version} {version} is held by {recorded} rows{lowest}; a version id must be "
            "unique (make it the table's primary key)"
        )
    if problem.startswith("null "):
        column = problem.removeprefix("null ")
        return (
            f"{head}, column {column!r}, {where}, {layout.version}={'NULL' if version is None else version}: "
            f"NULL breaks the history contract ({', '.join((*layout.key, layout.version, layout.recorded_at))} "
            "must all be set)"
        )
    return (
        f"{head}, {where}: {layout.version} {previous} is recorded at {previous_recorded}, before "
        f"{layout.version} {version} (recorded at {recorded}) which precedes it; a history is appended in "
        "time (a later version must not be dated earlier), or snapshots already taken change"
    )


class HistoryContractError(SourceValueError):
    """A source table breaks the history contract: the snapshot would not be a function of as_of alone.

    The message names the table, the entity and the versions.
    """


def check_history(declared: sa.MetaData, first_row: Callable, backend: str) -> None:
    """Refuse a source whose history tables break the contract, naming the first offender.

    `first_row(sql)`: runs one query on the source and returns its first row or
    None. One query per history table (contract_query), before the snapshot
    query: a NULL key, a duplicate version id or a version recorded before one
    it follows would otherwise change the snapshot silently.
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
