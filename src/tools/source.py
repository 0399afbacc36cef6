"""`make source`: build the active adapter's demo source (an embedded SQLite history).

    python -m src.tools.source [--scale N] [--output PATH]

The adapter (params.yaml's `dataset.adapter`) provides the builder. An adapter
without one gets its data through `python -m src.tools.ingest`, and a team with
a real database sets SOURCE_URL instead: then nothing needs building.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from src.pipeline import config
from src.pipeline.params import ParamsError, load_adapter, load_params


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
    parser.add_argument("--output", type=Path, default=config.SOURCE_DB,
                        help=f"database file (default {config.SOURCE_DB})")
    args = parser.parse_args(argv)
    adapter, _ = load_adapter(load_params())
    if adapter.build_demo_source is None:
        sys.exit(f"source: dataset adapter {adapter.name!r} has no demo source; bring your table in with "
                 f"`python -m src.tools.ingest FILE --table NAME --id COLUMN`, or set {config.SOURCE_URL_ENV}")
    started = time.perf_counter()
    counts = adapter.build_demo_source(args.output, scale=args.scale)
    summary = " ".join(f"{table}={n:,}" for table, n in counts.items())
    print(f"wrote {args.output}: {summary} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError) as error:
        sys.exit(f"source: error: {error}")
