"""The pure parts of the benchmark: statistics, targets, the table, the result file's shape.

No timing happens here (bench/run.py measures); tests/template/test_bench.py tests this.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

# Bump when the layout of bench/results.json changes (2: n and failures per figure, target units).
RESULTS_SCHEMA = 2
RESULTS_KEYS = (
    "schema",
    "command",
    "started",
    "finished",
    "duration_s",
    "commit",
    "quick",
    "config",
    "machine",
    "versions",
    "runs",
    "figures",
    "targets",
    "profiles",
)
RUN_KEYS = ("section", "name", "scale", "repeat", "wall_s", "cpu_s", "max_rss_bytes", "returncode")
TARGET_KEYS = ("name", "value", "limit", "comparison", "met", "detail", "unit")
# How a target's value and limit are shown: a ratio, seconds, GiB, or a plain count.
UNITS = {"x": "×", "s": " s", "GiB": " GiB", "ms": " ms", "/s": "/s", "": ""}


def median(values: Iterable[float]) -> float:
    """The median (statistics.median: the mean of the middle two for an even count), as a float.

    Always a float, so a median of whole numbers (rows, bytes) is stored and shown as before.
    Empty is an error (statistics.StatisticsError, a ValueError).
    """
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (whole q in 0..100), linear between closest ranks (numpy's default).

    statistics.quantiles' "inclusive" method is that definition: its cut point
    q of 100 is numpy's percentile q. The ends are the extremes, which
    quantiles does not return; one value is every percentile of itself.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not (isinstance(q, int) and 0 <= q <= 100):
        raise ValueError(f"q must be a whole number in 0..100, got {q!r}")
    if q in (0, 100) or len(values) == 1:
        return float(min(values) if q == 0 else max(values) if q == 100 else values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference; None when either is missing or the reference is not positive."""
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def check(
    name: str, value: float | None, limit: float, comparison: str, detail: str = "", unit: str = "x"
) -> dict[str, Any]:
    """A target: `value <= limit` ("<=") or `value >= limit` (">="); unmeasured is not met."""
    if comparison not in ("<=", ">="):
        raise ValueError(f"comparison must be '<=' or '>=', got {comparison!r}")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {sorted(UNITS)}, got {unit!r}")
    met = None if value is None else (value <= limit if comparison == "<=" else value >= limit)
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "comparison": comparison,
        "met": met,
        "detail": detail,
        "unit": unit,
    }


def verdict(name: str, value: float | None, met: bool | None, detail: str = "", unit: str = "x") -> dict[str, Any]:
    """A target that is a yes/no fact (e.g. which stages ran), with a figure to show beside it."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {sorted(UNITS)}, got {unit!r}")
    return {"name": name, "value": value, "limit": None, "comparison": "is", "met": met, "detail": detail, "unit": unit}


def select(runs: Iterable[dict], **match: Any) -> list[dict]:
    """The runs whose fields equal every `match` value."""
    return [run for run in runs if all(run.get(key) == value for key, value in match.items())]


def n_text(*tallies: dict | None) -> str:
    """'n 3' or 'n 3 / 3', with failures named: '(1 failed)'."""
    tallies = [t for t in tallies if t]
    if not tallies:
        return "n –"
    failed = sum(t["failed"] for t in tallies)
    return "n " + " / ".join(str(t["n"]) for t in tallies) + (f" ({failed} failed)" if failed else "")


def fmt(value: Any, unit: str = "") -> str:
    """A table cell: 3 significant figures for numbers, an en dash for missing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not unit:
        return f"{value:,}"
    if isinstance(value, float):
        if unit == "MiB":
            return f"{value / 2**20:,.0f}"
        if unit == "x":
            return f"{value:.2f}×"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (also readable on a terminal): cells already formatted as text."""
    rows = [[str(cell) for cell in row] for row in rows]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {row} has {len(row)} cells, the header {len(header)}")
    widths = [max(len(str(h)), *(len(row[i]) for row in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def target_table(targets: Sequence[dict]) -> str:
    def word(met: bool | None) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[met]

    def value(t: dict) -> str:
        unit = t.get("unit", "x")
        if t["value"] is None or unit == "x":
            return fmt(t["value"], unit)
        return fmt(t["value"]) + UNITS[unit]

    return table(
        ["target", "measured", "limit", "verdict", "detail"],
        [
            [
                t["name"],
                value(t),
                "–" if t["limit"] is None else f"{t['comparison']} {t['limit']:g}{UNITS[t.get('unit', 'x')]}",
                word(t["met"]),
                t["detail"],
            ]
            for t in targets
        ],
    )


def validate_results(results: dict) -> list[str]:
    """Problems with the shape of a results dict (empty when it is well formed)."""
    problems = [f"missing key {key!r}" for key in RESULTS_KEYS if key not in results]
    if results.get("schema") != RESULTS_SCHEMA:
        problems.append(f"schema is {results.get('schema')!r}, expected {RESULTS_SCHEMA}")
    machine = results.get("machine", {})
    for key in ("cpu", "cores"):
        if not machine.get(key):
            problems.append(f"machine lacks {key!r}")
    if not isinstance(results.get("versions"), dict) or not results.get("versions"):
        problems.append("versions is empty")
    runs = results.get("runs")
    if not isinstance(runs, list) or not runs:
        problems.append("runs is empty")
    else:
        for index, run in enumerate(runs):
            absent = [key for key in RUN_KEYS if key not in run]
            if absent:
                problems.append(f"run {index} lacks {absent}")
    for index, target in enumerate(results.get("targets") or []):
        absent = [key for key in TARGET_KEYS if key not in target]
        if absent:
            problems.append(f"target {index} lacks {absent}")
    return problems
