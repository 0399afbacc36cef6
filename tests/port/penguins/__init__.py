"""A second data set, written as a forker would: Palmer penguins by species.

tests/template/test_scaffold.py checks that `make new-adapter`'s skeleton, filled
in (fill_in_penguins), declares what this package does; tests/port/test_fork.py
takes that filled-in skeleton through docs/adapt.md step by step, and
tests/port/test_template_update.py ports a copier fork with this package. The
data comes in through `python -m src.tools.ingest` (one plain table, no demo
builder), so the source is the history that ingest keeps: one table
`penguins`, keyed by `penguin_id`.

As the skeleton is, it is two modules: this one (schema, features, INPUTS) imports
no database library, since the service imports it for raw rows; source.py holds
the tables, the query and ADAPTER.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from src.pipeline.adapter import Domain, Inputs

ID = "penguin_id"
TARGET = "species"
CATEGORICAL = ("island", "sex")
MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
NUMERIC = (*MEASUREMENTS, "year")

SNAPSHOT_SCHEMA = pa.schema(
    [(ID, pa.int64()), ("recorded_at", pa.timestamp("us", tz="UTC"))]
    + [(name, pa.string()) for name in ("species", *CATEGORICAL)]
    + [(name, pa.float64()) for name in MEASUREMENTS]
    + [("year", pa.int16())]
)

# By meaning, not by the observed extremes: a body has a positive size.
# The study year is left open.
FEATURE_RANGES: dict[str, tuple[float | None, float | None]] = {name: (0, None) for name in MEASUREMENTS}
SNAPSHOT_DOMAINS: dict[str, Domain] = {"recorded_at": Domain(required=True)}

INPUT_COLUMNS = (*CATEGORICAL, *NUMERIC)


def derive_inputs(rows: pd.DataFrame) -> pd.DataFrame:
    """[ID, *CATEGORICAL, *NUMERIC], each from its own row, in the rows' order and index."""
    return pd.DataFrame(
        {
            ID: rows[ID].astype("int64"),
            **{name: rows[name] for name in CATEGORICAL},
            **{name: rows[name].astype("float64") for name in NUMERIC},
        }
    )


INPUTS = Inputs(
    schema=pa.schema([SNAPSHOT_SCHEMA.field(name) for name in INPUT_COLUMNS]),
    derive=derive_inputs,
    domains={name: SNAPSHOT_DOMAINS[name] for name in INPUT_COLUMNS if name in SNAPSHOT_DOMAINS},
)


def derive_features(snapshot: pd.DataFrame, params) -> tuple[pd.DataFrame, dict[str, int]]:
    """Model rows [ID, *features, TARGET] ordered by ID; a penguin without a species is excluded and counted."""
    missing = [name for name in SNAPSHOT_SCHEMA.names if name not in snapshot.columns]
    if missing:
        raise ValueError(f"snapshot lacks columns {missing}")
    labelled = snapshot[TARGET].notna()
    rows = snapshot.loc[labelled].sort_values(ID, kind="stable")
    features = derive_inputs(rows)
    features[TARGET] = rows[TARGET].astype("str")
    return features.reset_index(drop=True), {"excluded_no_species": int((~labelled).sum())}


def __getattr__(name: str):
    """ADAPTER and the source side, from source.py on first use (PEP 562)."""
    if name in ("ADAPTER", "TABLES", "SNAPSHOT_QUERY"):
        from . import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
