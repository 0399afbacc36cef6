"""The history contract, checked at gather: tiny SQLite histories that break it one way each.

A snapshot is a pure function of as_of only while the history is append-only in
time (docs in src/pipeline/source/history.py). Each case below changed the snapshot
silently before gather checked: a NULL version id or recorded_at on an entity's
latest version, a version appended later but dated earlier, a duplicate
version id. Generic: a tiny adapter of one ingest-style table, whatever the
active adapter. The tables are plain (no keys, no NOT NULL), as a source built
by hand in SQL may be; the adapter declares them as history_table does.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from src.pipeline.adapter import Adapter
from src.pipeline.gather import gather
from src.pipeline.source import readers
from src.pipeline.source.contract import HistoryContractError, contract_query, history_layout
from src.pipeline.source.history import history_table, latest_query
from src.pipeline.source.ingest import ingest
from src.pipeline.source.validate import SourceValueError

TABLE, ID = "items", "item_id"
D1, D2, D3 = "2020-01-01 00:00:00", "2020-01-02 00:00:00", "2020-01-03 00:00:00"
AS_OF = "2020-12-31 23:59:59"

DECLARED = sa.MetaData()
history_table(DECLARED, TABLE, ID, sa.Column("colour", sa.Text))
ADAPTER = Adapter(
    name="items",
    title="items",
    entity="items",
    id=ID,
    target="colour",
    target_type=pa.string(),
    source_tables=DECLARED,
    snapshot_query=latest_query(TABLE, ID, ["colour"]),
    snapshot_schema=pa.schema(
        [(ID, pa.int64()), ("recorded_at", pa.timestamp("us", tz="UTC")), ("colour", pa.string())]
    ),
    categorical=(),
    numeric=(),
    derive_features=lambda frame, _params: (frame, {}),
)
PATHS = [pytest.param(True, id="adbc"), pytest.param(False, id="sqlalchemy-rows")]


def plain_history(path: Path, rows: list[tuple]) -> str:
    """A SQLite file holding `rows` (version_id, item_id, recorded_at, colour) in a table without constraints."""
    with sqlite3.connect(path) as connection:
        connection.execute(
            f"CREATE TABLE {TABLE} (version_id INTEGER, {ID} BIGINT, recorded_at TEXT, row_hash TEXT, colour TEXT)"
        )
        connection.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, 'h', ?)", rows)
    return f"sqlite:///{path}"


VALID = [(1, 1, D1, "red"), (2, 2, D1, "red"), (3, 1, D2, "blue"), (4, 2, D2, "green"), (5, 3, D3, "red")]


def _refused(url: str, tmp_path: Path, arrow_native: bool) -> str:
    output = tmp_path / "out" / "snapshot.parquet"
    output.parent.mkdir()
    output.write_bytes(b"the previous snapshot")
    with pytest.raises(HistoryContractError) as error:
        gather(ADAPTER, url, AS_OF, 1000, output, arrow_native=arrow_native)
    assert output.read_bytes() == b"the previous snapshot"
    assert sorted(p.name for p in output.parent.iterdir()) == ["snapshot.parquet"]
    message = str(error.value)
    assert "\n" not in message and f"source table {TABLE!r}" in message, message
    assert isinstance(error.value, SourceValueError)  # what the stage's main turns into one line and exit 1
    return message


def test_the_declared_layout_is_read_from_history_table():
    layout = history_layout(DECLARED.tables[TABLE])
    assert (layout.version, layout.key, layout.in_append_order) == ("version_id", (ID,), True)
    assert history_layout(sa.Table("plain", sa.MetaData(), sa.Column("a", sa.Integer))) is None


@pytest.mark.parametrize("arrow_native", PATHS)
def test_a_valid_history_passes_and_its_snapshot_bytes_are_unchanged(tmp_path, monkeypatch, arrow_native):
    url = plain_history(tmp_path / "valid.sqlite", VALID)
    checked, unchecked = tmp_path / "checked.parquet", tmp_path / "unchecked.parquet"
    assert gather(ADAPTER, url, AS_OF, 1000, checked, arrow_native=arrow_native) == 3
    monkeypatch.setattr(readers, "check_history", lambda *_args: None)
    gather(ADAPTER, url, AS_OF, 1000, unchecked, arrow_native=arrow_native)
    assert hashlib.md5(checked.read_bytes()).digest() == hashlib.md5(unchecked.read_bytes()).digest()


def test_a_history_kept_by_ingest_passes(tmp_path):
    url = f"sqlite:///{tmp_path / 'ingested.sqlite'}"
    import pandas as pd

    ingest(pd.DataFrame({ID: [1, 2], "colour": ["red", "red"]}), url, TABLE, ID, recorded_at="2020-01-01")
    ingest(pd.DataFrame({ID: [1, 2, 3], "colour": ["blue", "red", "red"]}), url, TABLE, ID, recorded_at="2020-01-02")
    assert gather(ADAPTER, url, AS_OF, 1000, tmp_path / "snapshot.parquet") == 3


@pytest.mark.parametrize("arrow_native", PATHS)
def test_a_null_version_id_on_a_latest_version_is_refused(tmp_path, arrow_native):
    rows = VALID[:4] + [(None, 3, D3, "red")]  # before: entity 3 silently dropped from the snapshot
    message = _refused(plain_history(tmp_path / "h.sqlite", rows), tmp_path, arrow_native)
    assert "column 'version_id'" in message and f"{ID}=3" in message and "version_id=NULL" in message


@pytest.mark.parametrize("arrow_native", PATHS)
def test_a_null_recorded_at_is_refused(tmp_path, arrow_native):
    rows = VALID[:2] + [(3, 1, None, "blue")] + VALID[3:]  # before: entity 1 reverted to version 1
    message = _refused(plain_history(tmp_path / "h.sqlite", rows), tmp_path, arrow_native)
    assert "column 'recorded_at'" in message and f"{ID}=1" in message and "version_id=3" in message


@pytest.mark.parametrize("arrow_native", PATHS)
def test_a_null_id_is_refused(tmp_path, arrow_native):
    rows = VALID + [(6, None, D3, "red")]
    message = _refused(plain_history(tmp_path / "h.sqlite", rows), tmp_path, arrow_native)
    assert f"column {ID!r}" in message and f"{ID}=NULL" in message and "version_id=6" in message


@pytest.mark.parametrize("arrow_native", PATHS)
def test_a_back_dated_version_appended_later_is_refused(tmp_path, arrow_native):
    # Version 6, appended after version 3 of entity 1, is dated before it: a snapshot as of
    # 2020-01-01 18:00 read version 1's "red" before the append, and "black" after it.
    rows = VALID + [(6, 1, "2020-01-01 12:00:00", "black")]
    url = plain_history(tmp_path / "h.sqlite", rows)
    message = _refused(url, tmp_path, arrow_native)
    assert (
        f"{ID}=1: version_id 6 is recorded at 2020-01-01 12:00:00, before version_id 3 (recorded at "
        f"{D2}) which precedes it" in message
    ), message


@pytest.mark.parametrize("arrow_native", PATHS)
def test_a_duplicate_version_id_is_named_not_blamed_on_order_by(tmp_path, arrow_native):
    rows = VALID[:4] + [(4, 3, D3, "red")]  # entity 3's only version shares id 4 with entity 2's
    message = _refused(plain_history(tmp_path / "h.sqlite", rows), tmp_path, arrow_native)
    assert "version_id 4 is held by 2 rows" in message and "ORDER BY" not in message, message


def test_the_first_offender_is_a_null_before_an_order_breach(tmp_path):
    rows = VALID + [(6, 1, "2020-01-01 12:00:00", "black"), (7, 2, None, "red")]
    message = _refused(plain_history(tmp_path / "h.sqlite", rows), tmp_path, True)
    assert "column 'recorded_at'" in message and "version_id=7" in message


def test_shuffled_version_ids_skip_only_the_order_check(tmp_path):
    shuffled = sa.MetaData()
    history_table(shuffled, TABLE, ID, sa.Column("colour", sa.Text)).info["shuffled_version_ids"] = True
    layout = history_layout(shuffled.tables[TABLE])
    assert not layout.in_append_order
    url = plain_history(tmp_path / "h.sqlite", [(9, 1, D1, "red"), (3, 1, D2, "blue"), (None, 2, D1, "red")])
    with sa.create_engine(url).connect() as connection:
        row = connection.execute(sa.text(contract_query(layout))).first()
    assert row is not None and row[0] == "null version_id"


# --- PostgreSQL: the same check, the same messages -----------------------------------

BROKEN = {  # rows, what the message must say
    "null version": (VALID[:4] + [(None, 3, D3, "red")], "column 'version_id'"),
    "null recorded_at": (VALID[:2] + [(3, 1, None, "blue")] + VALID[3:], "column 'recorded_at'"),
    "back-dated": (
        VALID + [(6, 1, "2020-01-01 12:00:00", "black")],
        f"{ID}=1: version_id 6 is recorded at 2020-01-01 12:00:00, before version_id 3",
    ),
    "duplicate": (VALID[:4] + [(4, 3, D3, "red")], "version_id 4 is held by 2 rows"),
}


@pytest.fixture(scope="module")
def postgres():
    from tests.postgres import running_cluster

    with running_cluster() as cluster:
        yield cluster


def _postgres_history(cluster, name: str, rows: list[tuple]) -> str:
    database = cluster.create_database(name)
    values = ", ".join(
        "(" + ", ".join("NULL" if value is None else repr(value) for value in row) + ", 'h')" for row in rows
    )
    cluster.execute(
        f"CREATE TABLE {TABLE} (version_id INTEGER, {ID} BIGINT, recorded_at TEXT, colour TEXT, row_hash TEXT)",
        f"INSERT INTO {TABLE} (version_id, {ID}, recorded_at, colour, row_hash) VALUES {values}",
        database=database,
    )
    return cluster.url(database)


@pytest.mark.slow
@pytest.mark.parametrize("arrow_native", PATHS)
def test_postgresql_passes_a_valid_history_with_the_same_bytes_as_sqlite(postgres, tmp_path, arrow_native):
    url = _postgres_history(postgres, f"valid_{int(arrow_native)}", VALID)
    assert gather(ADAPTER, url, AS_OF, 1000, tmp_path / "pg.parquet", arrow_native=arrow_native) == 3
    gather(ADAPTER, plain_history(tmp_path / "h.sqlite", VALID), AS_OF, 1000, tmp_path / "sqlite.parquet")
    assert (tmp_path / "pg.parquet").read_bytes() == (tmp_path / "sqlite.parquet").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("arrow_native", PATHS)
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_postgresql_refuses_each_breach(postgres, tmp_path, case, arrow_native):
    rows, expected = BROKEN[case]
    url = _postgres_history(postgres, f"{case.replace(' ', '_').replace('-', '_')}_{int(arrow_native)}", rows)
    assert expected in _refused(url, tmp_path, arrow_native)


def test_a_version_id_the_database_keeps_unique_is_not_searched_for_duplicates(tmp_path):
    from src.pipeline.source.contract import enforced_query

    layout = history_layout(DECLARED.tables[TABLE])
    keyed = f"sqlite:///{tmp_path / 'keyed.sqlite'}"
    engine = sa.create_engine(keyed)
    DECLARED.create_all(engine)  # version_id INTEGER PRIMARY KEY: SQLite itself keeps it unique
    try:
        with engine.connect() as connection:
            unique, not_null = connection.execute(sa.text(enforced_query(layout, "sqlite"))).first()
            assert unique and set(not_null.split(",")) >= {"version_id", ID, "recorded_at"}
    finally:
        engine.dispose()
    plain = plain_history(tmp_path / "plain.sqlite", VALID)
    with sa.create_engine(plain).connect() as connection:
        assert tuple(connection.execute(sa.text(enforced_query(layout, "sqlite"))).first()) == (0, None)
        connection.exec_driver_sql(f"CREATE UNIQUE INDEX by_version ON {TABLE} (version_id)")
        assert connection.execute(sa.text(enforced_query(layout, "sqlite"))).first()[0] == 1
    assert "first_duplicate" not in contract_query(layout, duplicates=False)
    # With everything enforced, only the order check is left; without it, nothing.
    everything = frozenset({"version_id", ID, "recorded_at"})
    assert "IS NULL" not in contract_query(layout, duplicates=False, not_null=everything)
    shuffled = history_layout(DECLARED.tables[TABLE])
    shuffled = type(shuffled)(shuffled.table, shuffled.version, shuffled.key, in_append_order=False)
    assert contract_query(shuffled, duplicates=False, not_null=everything) is None


def test_postgresql_primary_key_counts_as_unique(postgres):
    from src.pipeline.source.contract import enforced_query

    layout = history_layout(DECLARED.tables[TABLE])
    database = postgres.create_database("keyed")
    query = enforced_query(layout, "postgresql")
    postgres.execute(
        f"CREATE TABLE {TABLE} (version_id INTEGER, {ID} BIGINT NOT NULL, recorded_at TEXT)", database=database
    )
    assert postgres.execute(query, database=database) == [(False, ID)]
    postgres.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (version_id)", database=database)
    assert postgres.execute(query, database=database) == [(True, f"version_id,{ID}")]
