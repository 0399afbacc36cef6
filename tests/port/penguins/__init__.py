"""A second data set, written as a forker would: Palmer penguins by species.

tests/template/test_scaffold.py checks that `make new-adapter`'s skeleton, filled
in (fill_in_penguins), declares what this package does; tests/port/test_fork.py
takes that filled-in skeleton through docs/adapt.md step by step, and
tests/port/test_template_update.py ports a copier fork with this package. The
data comes in through `python -m src.tools.ingest` (one plain table, no demo
builder), so the source is the history that ingest keeps: one table
`penguins`, keyed by `penguin_id`.
"""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from src.pipeline.adapter import Adapter
from src.pipeline.source import history

ID = "penguin_id"
TARGET = "species"
TABLE = "penguins"
CATEGORICAL = ("island", "sex")
MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
NUMERIC = (*MEASUREMENTS, "year")

# What ingest creates from the CSV: measurements with gaps arrive as floats.
TABLES = sa.MetaData()
history.history_table(
    TABLES, TABLE, ID,
    sa.Column("species", sa.Text), sa.Column("island", sa.Text), sa.Column("sex", sa.Text),
    *(sa.Column(name, sa.Float) for name in MEASUREMENTS),
    sa.Column("year", sa.BigInteger),
)

SNAPSHOT_COLUMNS = ["species", *CATEGORICAL, *NUMERIC]
SNAPSHOT_QUERY = history.latest_query(TABLE, ID, SNAPSHOT_COLUMNS)
SNAPSHOT_SCHEMA = pa.schema(
    [(ID, pa.int64()), ("recorded_at", pa.timestamp("us", tz="UTC"))]
    + [(name, pa.string()) for name in ("species", *CATEGORICAL)]
    + [(name, pa.float64()) for name in MEASUREMENTS]
    + [("year", pa.int16())]
)

# By meaning, not by the observed extremes: a body has a positive size.
# The study year is left open.
FEATURE_RANGES: dict[str, tuple[float | None, float | None]] = {name: (0, None) for name in MEASUREMENTS}


def derive_features(snapshot: pd.DataFrame, params) -> tuple[pd.DataFrame, dict[str, int]]:
    """Model rows [ID, *features, TARGET] ordered by ID; a penguin without a species is excluded and counted."""
    missing = [name for name in SNAPSHOT_SCHEMA.names if name not in snapshot.columns]
    if missing:
        raise ValueError(f"snapshot lacks columns {missing}")
    labelled = snapshot[TARGET].notna()
    rows = snapshot.loc[labelled].sort_values(ID, kind="stable")
    features = pd.DataFrame({
        ID: rows[ID].astype("int64"),
        **{name: rows[name] for name in CATEGORICAL},
        **{name: rows[name].astype("float64") for name in NUMERIC},
        TARGET: rows[TARGET].astype("str"),
    }).reset_index(drop=True)
    return features, {"excluded_no_species": int((~labelled).sum())}


ADAPTER = Adapter(
    name="penguins",
    title="Penguin species model",
    entity="penguins",
    id=ID,
    target=TARGET,
    target_type=pa.string(),
    source_tables=TABLES,
    snapshot_query=SNAPSHOT_QUERY,
    snapshot_schema=SNAPSHOT_SCHEMA,
    categorical=CATEGORICAL,
    numeric=NUMERIC,
    derive_features=derive_features,
    feature_ranges=FEATURE_RANGES,
    build_demo_source=None,
)
