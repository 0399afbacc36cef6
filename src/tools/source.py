"""`make source`: build the active adapter's demo source (an embedded SQLite history).

    python -m src.tools.source [--scale N] [--output PATH | --url URL]

The adapter (params.yaml's `dataset.adapter`) provides the builder. An adapter
without one gets its data through `python -m src.tools.ingest`, and a team with
a real database sets SOURCE_URL instead: then nothing needs building.
`--url` loads the demo into a database server instead (the adapter's declared
source tables, version ids and recorded_at unchanged), e.g. to try gather
against PostgreSQL: docs/postgres.md. The password belongs in the environment
(PGPASSWORD, PGPASSFILE), not in the URL.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from src.pipeline import config
from src.pipeline.dataset import load_adapter
from src.pipeline.params import ParamsError, load_params
from src.pipeline.source.copy import check_absent, copy_tables
from src.pipeline.source.history import HistoryError
from src.pipeline.source.url import shown_url


def _scale(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.source", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=_scale, default=1, help="copies of the demo data, for benchmarks (default 1)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--output", type=Path, default=config.SOURCE_DB, help=f"database file (default {config.SOURCE_DB})"
    )
    target.add_argument(
        "--url",
        default=None,
        help="load the demo into this database instead (a SQLAlchemy URL, e.g. "
        "postgresql://user@host/db); its source tables must not exist there yet",
    )
    args = parser.parse_args(argv)
    adapter, _ = load_adapter(load_params())
    if adapter.build_demo_source is None:
        pointer = config.SOURCE_DB.relative_to(config.ROOT)
        sys.exit(
            f"source: dataset adapter {adapter.name!r} has no demo source, and no history is tracked "
            f"({pointer}.dvc is missing); bring your table in with "
            f"`python -m src.tools.ingest FILE --table NAME --id COLUMN` (it tracks the history with DVC), "
            f"`dvc pull` a history a colleague pushed, or set {config.SOURCE_URL_ENV}"
        )
    started = time.perf_counter()
    if args.url is None:
        counts = adapter.build_demo_source(args.output, scale=args.scale)
        summary = " ".join(f"{table}={n:,}" for table, n in counts.items())
        print(f"wrote {args.output}: {summary} in {time.perf_counter() - started:.1f} s")
        return
    check_absent(args.url, adapter.source_tables)  # before the build, which takes a while
    # Built as the embedded file first, then copied: one builder serves every database.
    with tempfile.TemporaryDirectory(prefix="demo-source-") as folder:
        built = Path(folder) / config.SOURCE_DB.name
        adapter.build_demo_source(built, scale=args.scale)
        loading = time.perf_counter()
        counts = copy_tables(f"sqlite:///{built}", args.url, adapter.source_tables)
    summary = " ".join(f"{table}={n:,}" for table, n in counts.items())
    print(
        f"loaded {shown_url(args.url)}: {summary} in {time.perf_counter() - started:.1f} s "
        f"(build {loading - started:.1f} s, load {time.perf_counter() - loading:.1f} s)"
    )


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, HistoryError, ValueError, FileNotFoundError) as error:
        sys.exit(f"source: error: {error}")
