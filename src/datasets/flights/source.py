"""The example's source side: the tables the snapshot query reads, the query, and the ADAPTER.

Apart from __init__.py, which serving imports, because it needs SQLAlchemy.
"""

from __future__ import annotations

import importlib

import pyarrow as pa
import sqlalchemy as sa

from src.datasets.flights import (
    CATEGORICAL,
    DEMO_BUILDER,
    FEATURE_RANGES,
    ID,
    INPUTS,
    NUMERIC,
    SNAPSHOT_DOMAINS,
    SNAPSHOT_SCHEMA,
    SNAPSHOT_SOURCES,
    STATUSES,
    TARGET,
    Params,
    derive_features,
)
from src.pipeline.adapter import Adapter
from src.pipeline.source.history import SHUFFLED_VERSIONS

# The source: an append-only history (src/pipeline/source/history.py says the
# contract). Declared once: gather checks these tables and columns before it
# queries, and the demo builder (src/demos/flights.py) creates them. The demo numbers
# versions in a shuffled order on purpose (nothing may lean on it), so its
# version ids do not follow append order: gather checks NULLs and unique
# version ids, but cannot check that no version was back-dated.
TABLES = sa.MetaData()
sa.Table(
    "flights",
    TABLES,
    sa.Column("version_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column(ID, sa.Integer, nullable=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("status", sa.Text, sa.CheckConstraint(f"status IN {STATUSES}"), nullable=False),
    *(
        sa.Column(name, sa.Integer)
        for name in ("year", "month", "day", "sched_dep_time", "sched_arr_time", "hour", "minute")
    ),
    sa.Column("time_hour", sa.Text),
    sa.Column("carrier", sa.Text),
    sa.Column("flight", sa.Integer),
    sa.Column("tailnum", sa.Text),
    sa.Column("origin", sa.Text),
    sa.Column("dest", sa.Text),
    sa.Column("distance", sa.Float),
    sa.Column("dep_time", sa.Integer),
    sa.Column("dep_delay", sa.Float),
    sa.Column("arr_time", sa.Integer),
    sa.Column("arr_delay", sa.Float),
    sa.Column("air_time", sa.Float),
    sa.Index("flights_by_recorded", ID, "recorded_at"),
    info={SHUFFLED_VERSIONS: True},
)
sa.Table(
    "weather",
    TABLES,
    sa.Column("weather_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("time_hour", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    *(
        sa.Column(name, sa.Float)
        for name in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
    ),
    sa.Index("weather_by_recorded", "origin", "time_hour", "recorded_at"),
    info={SHUFFLED_VERSIONS: True},
)
sa.Table(
    "planes",
    TABLES,
    sa.Column("plane_version_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tailnum", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("year", sa.Integer),
    sa.Column("type", sa.Text),
    sa.Column("manufacturer", sa.Text),
    sa.Column("model", sa.Text),
    sa.Column("engines", sa.Integer),
    sa.Column("seats", sa.Integer),
    sa.Column("speed", sa.Float),
    sa.Column("engine", sa.Text),
    sa.Index("planes_by_recorded", "tailnum", "recorded_at"),
    info={SHUFFLED_VERSIONS: True},
)
# Static reference tables of the demo source; the snapshot does not read them.
REFERENCE_TABLES = sa.MetaData()
sa.Table("airlines", REFERENCE_TABLES, sa.Column("carrier", sa.Text, primary_key=True), sa.Column("name", sa.Text))
sa.Table(
    "airports",
    REFERENCE_TABLES,
    sa.Column("faa", sa.Text, primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("lat", sa.Float),
    sa.Column("lon", sa.Float),
    sa.Column("alt", sa.Integer),
    sa.Column("tz", sa.Integer),
    sa.Column("dst", sa.Text),
    sa.Column("tzone", sa.Text),
)
sa.Table("source_meta", REFERENCE_TABLES, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text))

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


def adapter() -> Adapter:
    return Adapter(
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
        inputs=INPUTS,
        build_demo_source=lambda output, scale=1: _build_demo_source(output, scale),
    )


def _build_demo_source(output, scale: int) -> dict[str, int]:
    # Imported by name when `make source` builds, never by the stages: the builder
    # lives in src/demos/, outside the src/datasets that every stage depends on,
    # so editing it reruns no stage (tests/template/test_config.py checks both).
    builder = importlib.import_module(DEMO_BUILDER)
    return builder.build(output, scale=scale)
