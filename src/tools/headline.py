"""The headline metrics of the last run, one line: what `make repro` ends with.

The top-level numbers of eval/metrics.json are the scores (dvclive nests the
bookkeeping counts under rows/, unknown_categories/ and missing_categories/),
printed in the order the evaluate stage logs them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from src.pipeline import config


def scores(metrics: dict) -> dict[str, float]:
    """The top-level numbers: the scores (the nested groups are bookkeeping counts)."""
    return {
        name: value
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def headline(metrics: dict) -> str:
    rows = metrics.get("rows", {}).get("test")
    return ", ".join(f"{name} {value:.4f}" for name, value in scores(metrics).items()) + (
        f" (on {rows:,} test rows)" if isinstance(rows, int) else ""
    )


def main(path: Path = config.METRICS) -> None:
    try:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        sys.exit(f"headline: {path} not found: run `dvc repro`")
    except json.JSONDecodeError as error:
        sys.exit(f"headline: {path} is not valid JSON: {error}")
    print(f"metrics: {headline(metrics)}")


if __name__ == "__main__":
    main()
