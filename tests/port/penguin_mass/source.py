"""The penguin_mass adapter's source side: the ingested `penguins` table, the query, and ADAPTER."""

from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa

from src.pipeline.adapter import Adapter
from src.pipeline.source import history

from . import (
    CATEGORICAL,
    FEATURE_RANGES,
    ID,
    INPUTS,
    MEASUREMENTS,
    NUMERIC,
    SNAPSHOT_DOMAINS,
    SNAPSHOT_SCHEMA,
    TARGET,
    derive_features,
)

TABLE = "penguins"

# As ingest creates it from the CSV: measurements with gaps arrive as floats.
TABLES = sa.MetaData()
history.history_table(
    TABLES,
    TABLE,
    ID,
    *(sa.Column(name, sa.Text) for name in CATEGORICAL),
    *(sa.Column(name, sa.Float) for name in (*MEASUREMENTS, TARGET)),
    sa.Column("year", sa.BigInteger),
)

SNAPSHOT_QUERY = history.latest_query(
    TABLE, ID, [name for name in SNAPSHOT_SCHEMA.names if name not in (ID, "recorded_at")]
)

ADAPTER = Adapter(
    name="penguin_mass",
    title="Penguin body mass model",
    entity="penguins",
    id=ID,
    target=TARGET,
    target_type=pa.float64(),  # a float target: a regression
    source_tables=TABLES,
    snapshot_query=SNAPSHOT_QUERY,
    snapshot_schema=SNAPSHOT_SCHEMA,
    categorical=CATEGORICAL,
    numeric=NUMERIC,
    derive_features=derive_features,
    feature_ranges=FEATURE_RANGES,
    snapshot_domains=SNAPSHOT_DOMAINS,
    inputs=INPUTS,
    build_demo_source=None,
)
