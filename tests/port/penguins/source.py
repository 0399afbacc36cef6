"""The penguins adapter's source side: what ingest creates from the CSV, the query, and ADAPTER."""

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

# Measurements with gaps arrive as floats.
TABLES = sa.MetaData()
history.history_table(
    TABLES,
    TABLE,
    ID,
    sa.Column("species", sa.Text),
    sa.Column("island", sa.Text),
    sa.Column("sex", sa.Text),
    *(sa.Column(name, sa.Float) for name in MEASUREMENTS),
    sa.Column("year", sa.BigInteger),
)

SNAPSHOT_QUERY = history.latest_query(
    TABLE, ID, [name for name in SNAPSHOT_SCHEMA.names if name not in (ID, "recorded_at")]
)

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
    snapshot_domains=SNAPSHOT_DOMAINS,
    inputs=INPUTS,
    build_demo_source=None,
)
