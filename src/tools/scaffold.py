"""`make new-adapter NAME=<name>`: the skeleton of a fork's own dataset adapter.

    python -m src.tools.scaffold NAME

Writes, and never overwrites:
- src/datasets/<name>/__init__.py and source.py: an adapter for one table
  brought in by `python -m src.tools.ingest`, every `Adapter` field present and
  commented, each place to fill in marked `# REPLACE:`. As written it is
  already a valid adapter (placeholder columns `label`, `category`, `amount`),
  so every check passes from the first minute and each replacement can be tried
  on its own. __init__.py (schema, features, INPUTS) imports no database
  library, since the service imports it; source.py (tables, query, ADAPTER) does;
- tests/<name>/test_<name>_adapter.py: the fork's own tests of what only its
  adapter knows (tests/template/ checks the generic pipeline for any adapter);
- params.yaml: `dataset: {adapter: <name>}`, `categories: {}`, `classes: []`
  (a comment-keeping round trip, as `make categories` writes the file). Empty
  lists are where a port starts; `make categories` records them from the data.
The next steps are docs/adapt.md's checklist, from step 3.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import string
import sys
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from src.pipeline import config
from src.pipeline.adapter import PACKAGE
from src.pipeline.params import ParamsError, update_params
from src.tools.drop_example import EXAMPLE_MARKER, example_name

DATASETS_DIR = config.ROOT / Path(*PACKAGE.split("."))
TESTS_DIR = config.ROOT / "tests"
# Names taken by the template itself: the tests' folders (and, while it is there,
# the example adapter's own name: see `reserved`).
RESERVED = frozenset({"example", "template", "port", "conftest"})
# A lower-case package name, as PEP 8 asks: also a valid SQL identifier for the table.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")


class ScaffoldError(ValueError):
    """A NAME the scaffold refuses, or a file it would overwrite; the message is one line."""


PACKAGE_TEMPLATE = string.Template("""\
\"\"\"The $name data set's adapter, from `make new-adapter NAME=$name`.

Everything the template knows about $name lives in this package: the generic
pipeline reads `ADAPTER` (the contract: src/pipeline/adapter.py; each field:
docs/adapt.md). As written it is a valid adapter of one table brought in by
`python -m src.tools.ingest`, with placeholder columns (`label`, `category`,
`amount`): replace each `# REPLACE:` here and in source.py with what your data
holds, then run `python -m pytest tests/$name` and
`python -m src.pipeline.check_params --check`.

Two modules, as the service needs: this one holds the snapshot's schema and
the features' derivation (INPUTS, which the service imports to answer raw rows
on /predict/raw), and imports no database library; source.py holds the source
tables and the point-in-time query (SQLAlchemy), and builds ADAPTER, which this
module hands out on first use.
\"\"\"

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from src.pipeline.adapter import Domain, Inputs

# REPLACE: the id column given to ingest (`--id`). An integer, unique per entity:
# it keys the train/test split and every ORDER BY.
ID = "${name}_id"
# REPLACE: the label column and its type: pa.string() for text labels, pa.int8() or pa.int64() for integers.
TARGET = "label"
TARGET_TYPE = pa.string()
# REPLACE: the model's inputs. Categorical ones are encoded with the lists that `make categories`
# records in params.yaml; numeric ones are imputed (and scaled for linear models).
CATEGORICAL = ("category",)
NUMERIC = ("amount",)

# The snapshot's exact types: the Parquet file must not depend on what a driver inferred,
# and a value that does not fit its type stops gather. Its columns after the id and
# recorded_at are the ones the point-in-time query (source.py) reads.
SNAPSHOT_SCHEMA = pa.schema(
    [
        (ID, pa.int64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        # REPLACE: one (column, type) per column that derive_features reads.
        (TARGET, pa.string()),
        ("category", pa.string()),
        ("amount", pa.float64()),
    ]
)

# REPLACE: the values each numeric feature may take by its meaning (inclusive; None = open).
# Serving refuses values outside. Meanings, not the observed extremes.
FEATURE_RANGES: dict[str, tuple[float | None, float | None]] = {"amount": (0, None)}
# REPLACE: what a snapshot column may hold (bounds, allowed texts, required); gather stops at any
# other value, naming it. The id is always required.
SNAPSHOT_DOMAINS: dict[str, Domain] = {"recorded_at": Domain(required=True)}

# The snapshot columns the row-local derivation reads: what a raw row sent to the service must hold.
INPUT_COLUMNS = (*CATEGORICAL, *NUMERIC)  # REPLACE: if derive_inputs reads other columns


def derive_inputs(rows: pd.DataFrame) -> pd.DataFrame:
    \"\"\"[ID, *CATEGORICAL, *NUMERIC] from snapshot rows, in the rows' order and index.

    featurize (through derive_features) and the service's raw rows both run this, so each
    feature row must come from its own snapshot row alone: no means, ranks or "first seen"
    across rows, and no outcome.
    \"\"\"
    # REPLACE: how each feature comes from its row.
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
    \"\"\"Model rows [ID, *CATEGORICAL, *NUMERIC, TARGET] in id order, and the excluded rows counted by reason.

    featurize calls this on chunks of the snapshot, and a chunk may keep no row.
    \"\"\"
    missing = [name for name in SNAPSHOT_SCHEMA.names if name not in snapshot.columns]
    if missing:
        raise ValueError(f"snapshot lacks columns {missing}")
    # REPLACE: which rows have an outcome to learn from.
    labelled = snapshot[TARGET].notna()
    rows = snapshot.loc[labelled].sort_values(ID, kind="stable")
    features = derive_inputs(rows)
    features[TARGET] = rows[TARGET].astype(TARGET_TYPE.to_pandas_dtype())
    return features.reset_index(drop=True), {"excluded_no_label": int((~labelled).sum())}


def __getattr__(name: str):
    \"\"\"ADAPTER and the source side, from source.py on first use (PEP 562): serving never loads SQLAlchemy.\"\"\"
    if name in ("ADAPTER", "TABLES", "SNAPSHOT_QUERY"):
        from src.datasets.$name import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
""")

SOURCE_TEMPLATE = string.Template("""\
\"\"\"The $name adapter's source side: the history table, the point-in-time query, and ADAPTER.

gather and ingest import this module (through the package's ADAPTER); the
service does not, so SQLAlchemy stays out of serving.
\"\"\"

from __future__ import annotations

import sqlalchemy as sa

from src.datasets.$name import (
    CATEGORICAL,
    FEATURE_RANGES,
    ID,
    INPUTS,
    NUMERIC,
    SNAPSHOT_DOMAINS,
    SNAPSHOT_SCHEMA,
    TARGET,
    TARGET_TYPE,
    derive_features,
)
from src.pipeline.adapter import Adapter, NoParams
from src.pipeline.source import history

# REPLACE: the table name given to ingest (`--table`).
TABLE = "$name"

# The source: the history table that ingest keeps (version id, the id, recorded_at, a row hash),
# then your columns with the types ingest gives them: sa.Text for text, sa.BigInteger for whole
# numbers, sa.Float for decimals or whole numbers with gaps. gather checks them before it queries.
TABLES = sa.MetaData()
history.history_table(
    TABLES,
    TABLE,
    ID,
    # REPLACE: one sa.Column per column of your table besides the id.
    sa.Column(TARGET, sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("amount", sa.Float),
)

# The point-in-time read: per entity, the latest version recorded at or before :as_of, in id
# order, of the snapshot schema's columns.
SNAPSHOT_QUERY = history.latest_query(
    TABLE, ID, [name for name in SNAPSHOT_SCHEMA.names if name not in (ID, "recorded_at")]
)

ADAPTER = Adapter(
    name="$name",  # the package name: params.yaml's dataset.adapter
    title="$name model",  # REPLACE: the service's title, for people
    entity="$name rows",  # REPLACE: what one snapshot row is, in the plural ("orders", "patients")
    id=ID,
    target=TARGET,
    target_type=TARGET_TYPE,
    source_tables=TABLES,
    snapshot_query=SNAPSHOT_QUERY,
    snapshot_schema=SNAPSHOT_SCHEMA,
    categorical=CATEGORICAL,
    numeric=NUMERIC,
    derive_features=derive_features,
    feature_ranges=FEATURE_RANGES,
    snapshot_domains=SNAPSHOT_DOMAINS,
    # Where a snapshot column comes from ("table.column"), for error messages: with one table, every
    # column is its own. REPLACE: if the query joins other tables.
    snapshot_sources={},
    # REPLACE: a pydantic model of your own keys under `dataset:` in params.yaml, e.g. a BaseModel
    # with ConfigDict(extra="forbid", strict=True, frozen=True); NoParams allows none besides `adapter`.
    params_model=NoParams,
    inputs=INPUTS,  # the service's raw rows; None to serve engineered rows only
    # The data arrives through ingest (or SOURCE_URL), so there is no demo database to build.
    build_demo_source=None,
)
""")

TESTS_TEMPLATE = string.Template('''\
"""The $name adapter's own tests, from `make new-adapter NAME=$name`.

tests/template/ checks the generic pipeline for any adapter; these check what only the
$name adapter knows. The first two hold for any adapter built from its declarations;
the last one is yours: replace its rows (`# REPLACE:`) with rows of your data.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import yaml

from src.datasets.$name import ADAPTER, ID, SNAPSHOT_SCHEMA, TARGET
from src.pipeline import adapter, config, files
from tests.template.frames import snapshot_table


def adapter_params():
    """The adapter's own params from params.yaml (none if another adapter is active)."""
    section = yaml.safe_load(config.PARAMS_FILE.read_text(encoding="utf-8"))["dataset"]
    return ADAPTER.parse_params(section if section.get("adapter") == ADAPTER.name else {})


def test_the_adapter_loads_and_its_declarations_agree():
    assert adapter.load("$name") is ADAPTER  # load() runs ADAPTER.check()
    assert ADAPTER.entity_table in ADAPTER.source_tables.tables


def test_derive_features_keeps_the_declared_columns_in_id_order():
    snapshot = snapshot_table(rows=40, adapter=ADAPTER).to_pandas()
    rows, excluded = ADAPTER.derive_features(snapshot, adapter_params())
    assert list(rows.columns) == ADAPTER.features_schema.names
    files.to_arrow(rows, ADAPTER.features_schema)  # every value fits its declared type
    assert rows[ID].is_monotonic_increasing and rows[ID].is_unique
    assert set(rows[ID]) <= set(snapshot[ID])
    assert all(isinstance(count, int) for count in excluded.values())
    assert len(rows) + sum(excluded.values()) == len(snapshot), "every snapshot row is kept or counted as excluded"


def test_known_rows_give_the_expected_features():
    # REPLACE: a few rows as your source holds them (out of id order, one without an outcome),
    # and the feature rows you expect from them.
    recorded = dt.datetime(2020, 6, 1, 23, 59, 59, tzinfo=dt.UTC)
    snapshot = pa.Table.from_pydict(
        {
            ID: [3, 1, 2],
            "recorded_at": [recorded] * 3,
            TARGET: ["yes", None, "no"],
            "category": ["a", "b", None],
            "amount": [2.5, 1.0, 0.0],
        },
        schema=SNAPSHOT_SCHEMA,
    ).to_pandas()
    rows, excluded = ADAPTER.derive_features(snapshot, adapter_params())
    assert rows[ID].tolist() == [2, 3]
    assert rows[TARGET].tolist() == ["no", "yes"]
    assert rows["amount"].tolist() == [0.0, 2.5]
    assert excluded == {"excluded_no_label": 1}
''')


def check_name(name: str, datasets_dir: Path = DATASETS_DIR, tests_dir: Path = TESTS_DIR) -> None:
    """Refuse a NAME that is no lower-case package name, is reserved, or is taken; one line each."""
    if not NAME_PATTERN.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"NAME={name!r} is not a lower-case Python package name (letters, digits, _; "
            f"a letter first), e.g. NAME=churn"
        )
    if name in RESERVED or (datasets_dir / name / EXAMPLE_MARKER).is_file():
        raise ScaffoldError(f"NAME={name!r} is reserved by the template; choose your data set's own name")
    for path in (datasets_dir / name, tests_dir / name):
        if path.exists():
            raise ScaffoldError(
                f"{path.relative_to(datasets_dir.parent.parent)} already exists; "
                f"new-adapter never overwrites: choose another NAME or remove it first"
            )


def point_params_at(params_path: Path, name: str) -> bool:
    """`dataset: {adapter: name}`, `categories: {}`, `classes: []` in params_path, keeping its comments."""

    def change(document) -> None:
        for key in ("dataset", "categories", "classes"):
            if key not in document:
                raise ParamsError(f"{params_path} has no `{key}:` section to set")
        dataset = CommentedMap(adapter=name)
        # The blank line and comments that followed the old section belong before the next one.
        previous = document["dataset"]
        last = list(previous)[-1] if previous else None
        if last is not None and last in previous.ca.items:
            dataset.ca.items["adapter"] = previous.ca.items[last]
        document["dataset"] = dataset
        document["categories"] = CommentedMap()
        document["classes"] = CommentedSeq()

    return update_params(params_path, change)


def scaffold(name: str, root: Path = config.ROOT) -> list[Path]:
    """Write the adapter, its tests and the params; return the files written (relative to root)."""
    datasets_dir, tests_dir = root / Path(*PACKAGE.split(".")), root / "tests"
    check_name(name, datasets_dir, tests_dir)
    params = config.PARAMS_FILE.relative_to(config.ROOT)
    package = Path(*PACKAGE.split("."), name)
    written = [package / "__init__.py", package / "source.py", Path("tests", name, f"test_{name}_adapter.py")]
    try:
        for path, template in zip(written, (PACKAGE_TEMPLATE, SOURCE_TEMPLATE, TESTS_TEMPLATE), strict=True):
            (root / path).parent.mkdir(parents=True, exist_ok=path.parent == package)
            with open(root / path, "x", encoding="utf-8") as handle:  # "x": never overwrite
                handle.write(template.substitute(name=name))
        point_params_at(root / params, name)
    except BaseException:
        # Nothing half-made: the folders are new (check_name saw neither), so removing them is safe.
        for path in written:
            shutil.rmtree((root / path).parent, ignore_errors=True)
        raise
    return [*written, params]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.scaffold", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the data set's package name under src/datasets/ (lower case, e.g. churn)")
    args = parser.parse_args(argv)
    written = scaffold(args.name)
    example = example_name()
    drop = f" Then `make drop-example` removes the {example} example." if example else ""
    print(
        f"new-adapter: wrote {', '.join(map(str, written))}; params.yaml's dataset.adapter is now "
        f"{args.name!r}, its recorded lists empty.\n"
        f"Next (docs/adapt.md, from step 3): replace each `# REPLACE:` in {', '.join(map(str, written[:3]))}; "
        f"bring the data in (make ingest FILE=.. TABLE={args.name} ID=..); set gather.as_of; make categories; "
        f"make repro; commit.{drop}"
    )


if __name__ == "__main__":
    try:
        main()
    except (ScaffoldError, ParamsError) as error:
        sys.exit(f"new-adapter: error: {error}")
