"""The flights point-in-time query on a tiny hand-made source with corrections and late rows."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from src.datasets import flights as dataset
from src.pipeline.gather import gather
from src.pipeline.source.url import SourceError

AS_OF_EARLY = "2013-01-05 00:00:00"
AS_OF_LATE = "2013-02-01 00:00:00"


def _flight(version_id, flight_id, recorded_at, status, arr_delay=None, tailnum="N1", hour=10):
    return dict(
        version_id=version_id,
        flight_id=flight_id,
        recorded_at=recorded_at,
        status=status,
        year=2013,
        month=1,
        day=2,
        sched_dep_time=hour * 100 + 5,
        sched_arr_time=1300,
        hour=hour,
        minute=5,
        time_hour=f"2013-01-02 {hour:02d}:00:00",
        carrier="AA",
        flight=100 + flight_id,
        tailnum=tailnum,
        origin="JFK",
        dest="LAX",
        distance=2475.0,
        dep_time=None if status == "scheduled" else 1010,
        dep_delay=None if status == "scheduled" else 5.0,
        arr_time=None if status == "scheduled" else 1320,
        arr_delay=arr_delay,
        air_time=None if status == "scheduled" else 330.0,
    )


def _insert(connection, table, rows):
    columns = list(rows[0])
    connection.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [tuple(row[c] for c in columns) for row in rows],
    )


def make_source(path: Path, extra_flights=()) -> Path:
    """Flights inserted out of id order; flight 2 corrected after its outcome."""
    flights = [
        _flight(1, 3, "2012-12-03 10:00:00", "scheduled", hour=11),
        _flight(2, 1, "2012-12-03 10:00:00", "scheduled"),
        _flight(3, 2, "2012-12-03 10:00:00", "scheduled", tailnum="N2"),
        _flight(4, 2, "2013-01-03 10:00:00", "landed", arr_delay=40.0, tailnum="N2"),  # preliminary
        _flight(5, 1, "2013-01-03 10:00:00", "landed", arr_delay=-3.0),
        _flight(6, 2, "2013-01-10 10:00:00", "landed", arr_delay=12.0, tailnum="N2"),  # correction
        # a late row: recorded after the late as_of, must never appear
        _flight(7, 4, "2013-03-01 00:00:00", "scheduled"),
        *extra_flights,
    ]
    weather = [
        dict(
            weather_id=1,
            origin="JFK",
            time_hour="2013-01-02 10:00:00",
            recorded_at="2013-01-02 11:00:00",
            temp=30.0,
            dewp=20.0,
            humid=50.0,
            wind_dir=180.0,
            wind_speed=10.0,
            wind_gust=None,
            precip=0.0,
            pressure=1010.0,
            visib=10.0,
        ),
        # a re-recorded observation of the same hour: the later one wins
        dict(
            weather_id=2,
            origin="JFK",
            time_hour="2013-01-02 10:00:00",
            recorded_at="2013-01-20 00:00:00",
            temp=31.0,
            dewp=20.0,
            humid=50.0,
            wind_dir=180.0,
            wind_speed=10.0,
            wind_gust=None,
            precip=0.0,
            pressure=1010.0,
            visib=10.0,
        ),
    ]
    planes = [
        dict(
            plane_version_id=1,
            tailnum="N1",
            recorded_at="2012-12-01 00:00:00",
            year=2000,
            type="t",
            manufacturer="BOEING",
            model="737",
            engines=2,
            seats=None,
            speed=None,
            engine="Turbo-fan",
        ),
        dict(
            plane_version_id=2,
            tailnum="N1",
            recorded_at="2013-01-15 00:00:00",
            year=2000,
            type="t",
            manufacturer="BOEING",
            model="737",
            engines=2,
            seats=150,
            speed=None,
            engine="Turbo-fan",
        ),
    ]
    engine = sa.create_engine(f"sqlite:///{path}")
    dataset.TABLES.create_all(engine)  # the tables as the adapter declares them
    engine.dispose()
    with sqlite3.connect(path) as connection:
        _insert(connection, "flights", flights)
        _insert(connection, "weather", weather)
        _insert(connection, "planes", planes)
    return path


def snapshot(tmp_path, db, as_of, name="snap.parquet", **kwargs):
    out = tmp_path / name
    gather(dataset.ADAPTER, f"sqlite:///{db}", as_of, chunk_rows=2, output=out, **kwargs)
    return out, pq.read_table(out).to_pandas()


def test_latest_version_at_as_of(tmp_path):
    db = make_source(tmp_path / "src.sqlite")
    _, early = snapshot(tmp_path, db, AS_OF_EARLY)
    assert early[dataset.ID].tolist() == [1, 2, 3]  # ordered by id, not insertion; late row absent
    by_id = early.set_index(dataset.ID)
    assert by_id.loc[2, "arr_delay"] == 40.0  # the preliminary value was all that was known
    assert by_id.loc[3, "status"] == "scheduled"
    assert by_id.loc[1, "temp"] == 30.0
    assert by_id.isna().loc[1, "seats"]  # the plane's seats were not yet recorded

    _, late = snapshot(tmp_path, db, AS_OF_LATE, name="late.parquet")
    by_id = late.set_index(dataset.ID)
    assert late[dataset.ID].tolist() == [1, 2, 3]
    assert by_id.loc[2, "arr_delay"] == 12.0  # the correction
    assert by_id.loc[1, "temp"] == 31.0 and by_id.loc[1, "seats"] == 150


def test_snapshot_schema_is_explicit(tmp_path):
    out, _ = snapshot(tmp_path, make_source(tmp_path / "src.sqlite"), AS_OF_LATE)
    assert pq.read_schema(out).remove_metadata() == dataset.SNAPSHOT_SCHEMA


def test_snapshot_unchanged_by_later_history_and_row_order(tmp_path):
    db = make_source(tmp_path / "src.sqlite")
    first, _ = snapshot(tmp_path, db, AS_OF_EARLY)
    grown = make_source(
        tmp_path / "grown.sqlite",
        extra_flights=[
            _flight(8, 3, "2013-01-20 00:00:00", "cancelled"),
            _flight(9, 5, "2013-01-25 00:00:00", "scheduled"),
        ],
    )
    again, _ = snapshot(tmp_path, grown, AS_OF_EARLY, name="again.parquet", scramble=True)
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    assert digest(first) == digest(again)


def test_as_of_before_any_data_fails_and_leaves_nothing(tmp_path):
    db = make_source(tmp_path / "src.sqlite")
    with pytest.raises(SourceError, match="empty"):
        snapshot(tmp_path, db, "2000-01-01 00:00:00")
    assert list(tmp_path.glob("snap*")) == [] and list(tmp_path.glob(".snap*")) == []


def test_missing_table_and_column_are_named(tmp_path):
    db = make_source(tmp_path / "src.sqlite")
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE weather")
        connection.execute("ALTER TABLE planes DROP COLUMN seats")
    with pytest.raises(SourceError) as error:
        snapshot(tmp_path, db, AS_OF_LATE)
    assert "table 'weather' is missing" in str(error.value)
    assert "table 'planes' lacks columns ['seats']" in str(error.value)
    assert not (tmp_path / "snap.parquet").exists()
