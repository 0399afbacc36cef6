"""PostgreSQL as the source: the same history gives the same snapshot bytes as SQLite.

One throwaway cluster per module (tests/postgres.py), initialised with a
non-C collation (ICU en-US), as most servers run: the source contract keeps
timestamps as fixed-width UTC text so that comparing them does not depend on
the collation, and these tests would see it if it did. Roles other than the
superuser log in with a password that only the environment (PGPASSWORD)
carries; one test puts a wrong one in a URL too, to see that no error shows
it. Run with -rA to see the cluster's start and stop times and the demo's
load time.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from src.pipeline import config, lockfile
from src.pipeline.gather import gather
from src.pipeline.source.history import RECORDED_AT, VERSION_ID, HistoryError, latest_query
from src.pipeline.source.ingest import ingest
from src.pipeline.source.moments import as_of_timestamp, moment_text
from src.pipeline.source.url import SourceError
from tests.conftest import run
from tests.postgres import running_cluster
from tests.template.frames import ADAPTER

ICU_EN_US = ("--locale-provider=icu", "--icu-locale=en-US", "--locale=C.UTF-8")
WRITER, READER = "writer", "reader"
PASSWORD = secrets.token_hex(12)  # made per run: no password is written down anywhere
TABLE, ID = "items", "item_id"
SNAPSHOT = str(config.SNAPSHOT.relative_to(config.ROOT))


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(*ICU_EN_US) as started:
        for role in (WRITER, READER):
            started.create_role(role, PASSWORD)
        yield started


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def ingest_cli(path: Path, url: str, *args: str, password: str = PASSWORD):
    return run(
        ["python", "-m", "src.tools.ingest", str(path), "--table", TABLE, "--id", ID, *args, "--url", url],
        cwd=config.ROOT,
        check=False,
        PGPASSWORD=password,
    )


def read_as_of(url: str, moment: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = sa.text(latest_query(TABLE, ID, ["colour", "size"]))
            return [tuple(row) for row in connection.execute(query, {"as_of": moment_text(moment)})]
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("locale", [None, "C"], ids=["icu-en-US", "C"])
def test_ingest_builds_the_same_history_in_postgresql_as_in_sqlite(cluster, tmp_path, monkeypatch, locale):
    database = cluster.create_database(f"ingest_{locale or 'icu'}".lower(), owner=WRITER, locale=locale)
    # Lower case before upper in en-US, after it in C: the collation really differs.
    assert cluster.execute("SELECT 'a' < 'B'", database=database) == [(locale is None,)]
    postgres = cluster.url(database, user=WRITER)  # no password: libpq takes it from PGPASSWORD
    sqlite = f"sqlite:///{tmp_path / 'history.sqlite'}"
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    first = tmp_path / "first.csv"
    first.write_text("item_id,colour,size\n3,red,1.5\n1,blue,\n2,NA,7\n")
    for url in (sqlite, postgres):  # the command once, then the function it calls
        result = ingest_cli(first, url, "--recorded-at", "2020-01-01")
        assert result.returncode == 0, result.stderr
    assert "ingest: 3 new versions recorded at 2020-01-01 23:59:59, 0 unchanged rows" in result.stdout
    days = {
        "2020-01-02T09:30:00Z": ([1, 2, 3, 4], ["blue", None, "red", "Green"], [2.25, 7.0, 1.5, 0.1]),
        "2020-01-03": ([4, 1], ["green", "blue"], [0.1, 2.25]),
    }
    for day, (ids, colours, sizes) in days.items():
        rows = pd.DataFrame({ID: ids, "colour": colours, "size": sizes})
        appended = [ingest(rows, url, TABLE, ID, recorded_at=day).appended for url in (sqlite, postgres)]
        assert appended[0] == appended[1] > 0, day
    for moment in ("2019-12-31", "2020-01-01", *days, "2020-01-02T09:29:59Z"):
        assert read_as_of(postgres, moment) == read_as_of(sqlite, moment), moment
    assert [row[0] for row in read_as_of(postgres, "2020-01-03")] == [1, 2, 3, 4]
    stored = pd.read_sql(
        f"SELECT {VERSION_ID}, {ID}, {RECORDED_AT} FROM {TABLE} ORDER BY {VERSION_ID}", cluster.url(database)
    )
    assert stored[VERSION_ID].tolist() == list(range(1, 7))


@pytest.mark.slow
def test_a_wrong_password_is_refused_and_never_shown(cluster, tmp_path, monkeypatch):
    database = cluster.create_database("refusals", owner=WRITER)
    wrong = "Wr0ng-" + secrets.token_hex(6)
    path = tmp_path / "items.csv"
    path.write_text("item_id,colour,size\n1,red,1.0\n")
    refused = 'password authentication failed for user "writer"'
    # In the URL (as a careless SOURCE_URL would have it), then in the environment.
    in_url, in_environment = cluster.url(database, user=WRITER, password=wrong), cluster.url(database, user=WRITER)
    command = ingest_cli(path, in_url, "--recorded-at", "2020-01-01", password=PASSWORD)
    assert command.returncode == 1 and refused in command.stderr, command.stderr
    assert wrong not in command.stdout + command.stderr
    if ADAPTER.build_demo_source is not None:  # an adapter without a demo has nothing to copy
        command = run(
            ["python", "-m", "src.tools.source", "--url", in_environment],
            cwd=config.ROOT,
            check=False,
            PGPASSWORD=wrong,
        )
        assert command.returncode == 1 and refused in command.stderr, command.stderr
        assert wrong not in command.stdout + command.stderr
    for url, password in ((in_url, PASSWORD), (in_environment, wrong)):
        monkeypatch.setenv("PGPASSWORD", password)
        with pytest.raises(HistoryError, match=refused) as raised:
            ingest(pd.DataFrame({ID: [1], "colour": ["red"]}), url, TABLE, ID, recorded_at="2020-01-01")
        assert wrong not in str(raised.value)
        with pytest.raises(SourceError, match=refused) as raised:
            gather(ADAPTER, url, "2020-01-01 00:00:00", 1000, tmp_path / "snapshot.parquet")
        assert wrong not in str(raised.value)


@pytest.fixture(scope="module")
def demo(cluster):
    """The adapter's demo history, loaded by `python -m src.tools.source --url`; a read-only role's URL."""
    if ADAPTER.build_demo_source is None:
        pytest.skip(f"adapter {ADAPTER.name!r} has no demo source to load")
    database = cluster.create_database("demo")
    loaded = run(["python", "-m", "src.tools.source", "--url", cluster.url(database)], cwd=config.ROOT)
    print(loaded.stdout.strip())
    cluster.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}", database=database)
    return database


def locked_snapshot() -> tuple[str, str, int]:
    """What dvc.lock records for the snapshot: its MD5, and the as_of and chunk size it was made with."""
    lock = lockfile.read_dvc_lock(config.DVC_LOCK)
    ((_, as_of),) = lockfile.recorded_params(lock, "gather.as_of")
    ((_, chunk_rows),) = lockfile.recorded_params(lock, "gather.chunk_rows")
    return lockfile.locked_md5(lock, SNAPSHOT), as_of, chunk_rows


def gather_as_reader(cluster, database: str, output: Path, monkeypatch) -> str:
    expected, as_of, chunk_rows = locked_snapshot()
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    gather(ADAPTER, cluster.url(database, user=READER), as_of_timestamp(as_of), chunk_rows, output)
    return expected


@pytest.mark.long
def test_postgresql_gives_the_snapshot_that_dvc_lock_records(cluster, demo, tmp_path, monkeypatch):
    expected = gather_as_reader(cluster, demo, tmp_path / "snapshot.parquet", monkeypatch)
    assert md5(tmp_path / "snapshot.parquet") == expected, (
        "the snapshot gathered from PostgreSQL differs from the one dvc.lock records (SQLite's demo source)"
    )
    # The reader reads and nothing more: it can create no table.
    with pytest.raises(HistoryError, match="permission denied for schema public"):
        ingest(
            pd.DataFrame({ID: [1], "colour": ["red"]}),
            cluster.url(demo, user=READER),
            TABLE,
            ID,
            recorded_at="2020-01-01",
        )


def heap_order(cluster, database: str, table: sa.Table) -> list:
    key = table.primary_key.columns[0].name
    return [
        row[0] for row in cluster.execute(f"SELECT {key} FROM {table.name} ORDER BY ctid LIMIT 1000", database=database)
    ]


def there_and_back(table: sa.Table) -> list[str]:
    """Two UPDATEs of one column outside keys and indexes that leave every value as it was.

    Each writes new row versions at the end of the heap, so the rows move.
    """
    indexed = {column.name for index in table.indexes for column in index.columns}
    indexed |= {column.name for column in table.primary_key.columns}
    column = [c for c in table.columns if c.name not in indexed][-1]
    name, key = column.name, table.primary_key.columns[0].name
    if isinstance(column.type, (sa.Integer, sa.Float)):
        forth = back = f"{name} = -{name}"
    else:
        forth, back = f"{name} = {name} || '~'", f"{name} = left({name}, -1)"
    return [f"UPDATE {table.name} SET {change} WHERE {key} % 20 = 0" for change in (forth, back)]


@pytest.mark.long
def test_the_snapshot_survives_updates_vacuum_full_and_cluster(cluster, demo, tmp_path, monkeypatch):
    tables = ADAPTER.source_tables.sorted_tables
    before = {table.name: heap_order(cluster, demo, table) for table in tables}
    statements = []
    for table in tables:
        first_index = sorted(table.indexes, key=lambda index: index.name)[0].name
        statements += [
            *there_and_back(table),
            f"VACUUM FULL {table.name}",
            f"CLUSTER {table.name} USING {first_index}",
            f"ANALYZE {table.name}",
        ]
    cluster.execute(*statements, database=demo)
    moved = [name for name in before if heap_order(cluster, demo, ADAPTER.source_tables.tables[name]) != before[name]]
    assert moved == [table.name for table in tables]  # every heap is in another physical order now
    expected = gather_as_reader(cluster, demo, tmp_path / "snapshot.parquet", monkeypatch)
    assert md5(tmp_path / "snapshot.parquet") == expected
