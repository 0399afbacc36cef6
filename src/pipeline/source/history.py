"""The source contract: an append-only, timestamped history that gather reads as of a moment.

Every table a snapshot reads keeps *versions* of its records:
- `version_id`: an integer unique in the table (the primary key). It breaks
  ties between versions recorded at the same moment, so the choice never
  depends on physical row order.
- an entity id (an integer; e.g. `order_id`): the key that the snapshot, its
  split and every ORDER BY use. A record may have many versions.
- `recorded_at`: when the version became known, as UTC text in TIME_FORMAT
  (moments.py), so comparing strings compares moments on every database.
Rows are only ever appended: nothing is updated or deleted. A snapshot as of
a moment keeps, per entity, the latest version recorded at or before it.

Here: the names, the declaration of a history table (`history_table`) and
the point-in-time read of one (`latest_query`): what an adapter declares its
source with. contract.py checks that a source keeps the contract; ingest.py
turns a plain table into such a history (src/tools/ingest.py is its command);
copy.py moves declared tables, rows unchanged, to another database
(`python -m src.tools.source --url`).
"""

from __future__ import annotations

import sqlalchemy as sa

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
        name,
        metadata,
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
