"""A regression port, written as a forker would: the Palmer penguins' body mass from the rest.

The same data and history as tests/port/penguins/ (one ingested table
`penguins`, keyed by `penguin_id`), with another target: `body_mass_g`, a
float, so the template trains a regression (src/pipeline/adapter.py task_of).
species, island and sex are the categorical features. tests/port/test_regression_port.py
takes it through ingest, `make categories`, `dvc repro` and `dvc repro --force`.
Two modules, as the skeleton's: this one imports no database library.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from src.pipeline.adapter import Domain, Inputs

ID = "penguin_id"
TARGET = "body_mass_g"
CATEGORICAL = ("species", "island", "sex")
MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm")
NUMERIC = (*MEASUREMENTS, "year")

SNAPSHOT_SCHEMA = pa.schema(
    [(ID, pa.int64()), ("recorded_at", pa.timestamp("us", tz="UTC"))]
    + [(name, pa.string()) for name in CATEGORICAL]
    + [(name, pa.float64()) for name in (*MEASUREMENTS, TARGET)]
    + [("year", pa.int16())]
)

# By meaning: a body has a positive size and mass. The study year is left open.
FEATURE_RANGES: dict[str, tuple[float | None, float | None]] = {name: (0, None) for name in MEASUREMENTS}
SNAPSHOT_DOMAINS: dict[str, Domain] = {"recorded_at": Domain(required=True), TARGET: Domain(low=0)}

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
    """Model rows [ID, *features, TARGET] ordered by ID; a penguin without a body mass is excluded and counted."""
    missing = [name for name in SNAPSHOT_SCHEMA.names if name not in snapshot.columns]
    if missing:
        raise ValueError(f"snapshot lacks columns {missing}")
    weighed = snapshot[TARGET].notna()
    rows = snapshot.loc[weighed].sort_values(ID, kind="stable")
    features = derive_inputs(rows)
    features[TARGET] = rows[TARGET].astype("float64")
    return features.reset_index(drop=True), {"excluded_no_body_mass": int((~weighed).sum())}


def __getattr__(name: str):
    """ADAPTER and the source side, from source.py on first use (PEP 562)."""
    if name in ("ADAPTER", "TABLES", "SNAPSHOT_QUERY"):
        from . import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
