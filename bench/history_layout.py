"""How to version the source history with DVC: one SQLite file, or a folder of immutable segments.

    python -m bench.history_layout [--scales "1 10"] [--increment 0.01] [--repeats 3]

For each scale it takes the demo history (bench.sources.scaled_source: built once,
cached in bench/.cache/) and measures, in a throwaway DVC project, the life
of a history across one later ingest that appends `increment` of the rows as
new versions of the largest table:

- sqlite: `dvc add` of the database file, before and after the ingest;
- segments: each table's history exported once as a Parquet segment, the
  ingest's new versions as one more segment file, and `dvc add` of the folder
  (DVC stores a directory as one object per file, so an old segment is stored
  once however many versions of the folder follow).

Reported per layout: the time of each `dvc add`, the bytes each version adds to
the DVC cache (what `dvc push` uploads), and for segments the cost that layout
moves elsewhere: loading the segments into a queryable SQLite file, which
gather (a SQL query through a URL) would pay on every fresh machine. Figures
are medians of `repeats` runs; the result goes to bench/history_layout.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from adbc_driver_sqlite import dbapi as adbc_sqlite

from bench.measure import BENCH_DIR
from bench.sources import CACHE_DIR, scaled_source
from src.pipeline import config

RESULTS = BENCH_DIR / "history_layout.json"
DVC = str(config.VENV / "bin" / "dvc")


def tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def dvc_add(project: Path, target: str) -> float:
    started = time.perf_counter()
    subprocess.run([DVC, "add", "-q", target], cwd=project, check=True)
    return time.perf_counter() - started


def new_project(base: Path) -> Path:
    project = base / "project"
    project.mkdir()
    subprocess.run([DVC, "init", "-q", "--no-scm"], cwd=project, check=True)
    subprocess.run([DVC, "config", "core.analytics", "false"], cwd=project, check=True)
    return project


def tables(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def largest_table(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        counts = {name: connection.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in tables(database)}
    return max(sorted(counts), key=counts.get)


def append_versions(connection: sqlite3.Connection, table: str, fraction: float) -> int:
    """A later ingest: `fraction` of the table's rows again, as new versions recorded after every existing one."""
    top, last, rows = connection.execute(
        f'SELECT MAX(version_id), MAX(recorded_at), COUNT(*) FROM "{table}"'
    ).fetchone()
    columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
    every = max(1, round(1 / fraction))
    values = ", ".join(
        f"version_id + {top}"
        if name == "version_id"
        else "datetime(?, '+1 day')"
        if name == "recorded_at"
        else f'"{name}"'
        for name in columns
    )
    names = ", ".join(f'"{name}"' for name in columns)
    cursor = connection.execute(
        f'INSERT INTO "{table}" ({names}) SELECT {values} FROM "{table}" WHERE version_id % {every} = 0', (last,)
    )
    return cursor.rowcount


def sqlite_layout(source: Path, base: Path, fraction: float) -> dict:
    project = new_project(base)
    database = project / "source.sqlite"
    shutil.copyfile(source, database)
    first = dvc_add(project, database.name)
    cache = project / ".dvc" / "cache"
    stored = tree_bytes(cache)
    with sqlite3.connect(database) as connection:
        appended = append_versions(connection, largest_table(database), fraction)
    second = dvc_add(project, database.name)
    return {
        "add_first_s": first,
        "add_after_ingest_s": second,
        "first_bytes": stored,
        "ingest_bytes": tree_bytes(cache) - stored,
        "appended_rows": appended,
    }


def export_segments(database: Path, folder: Path, suffix: str, names: list[str] | None = None, where: str = "") -> None:
    """Each table (or each of `names`) as one Parquet segment, in rowid order (some tables have no version_id)."""
    with adbc_sqlite.connect(str(database)) as connection, connection.cursor() as cursor:
        for name in names or tables(database):
            cursor.execute(f'SELECT * FROM "{name}" {where} ORDER BY rowid')
            table = cursor.fetch_arrow_table()
            if table.num_rows:
                (folder / name).mkdir(parents=True, exist_ok=True)
                pq.write_table(table, folder / name / f"segment-{suffix}.parquet", compression="zstd")


def load_segments(folder: Path, database: Path) -> None:
    """What a segment layout costs each fresh machine: the segments made queryable again."""
    with adbc_sqlite.connect(str(database)) as connection, connection.cursor() as cursor:
        for table_dir in sorted(folder.iterdir()):
            table = pa.concat_tables(pq.read_table(path) for path in sorted(table_dir.glob("*.parquet")))
            cursor.adbc_ingest(table_dir.name, table, mode="create")
        connection.commit()


def segments_layout(source: Path, base: Path, fraction: float) -> dict:
    project = new_project(base)
    folder = project / "history"
    working = base / "working.sqlite"  # the ingest's own database, outside the tracked folder
    shutil.copyfile(source, working)
    export_segments(working, folder, "0000")
    first = dvc_add(project, folder.name)
    cache = project / ".dvc" / "cache"
    stored = tree_bytes(cache)
    with sqlite3.connect(working) as connection:
        table = largest_table(working)
        top = connection.execute(f'SELECT MAX(version_id) FROM "{table}"').fetchone()[0]
        appended = append_versions(connection, table, fraction)
    export_segments(working, folder, "0001", [table], where=f"WHERE version_id > {top}")
    second = dvc_add(project, folder.name)
    started = time.perf_counter()
    load_segments(folder, base / "loaded.sqlite")
    return {
        "add_first_s": first,
        "add_after_ingest_s": second,
        "first_bytes": stored,
        "ingest_bytes": tree_bytes(cache) - stored,
        "appended_rows": appended,
        "load_for_gather_s": time.perf_counter() - started,
    }


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1 10")
    parser.add_argument("--increment", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict = {"increment": args.increment, "repeats": args.repeats, "scales": {}}
    for scale in (int(text) for text in args.scales.split()):
        source = scaled_source(scale) / config.SOURCE_DB.name
        figures = {}
        for layout, measure in (("sqlite", sqlite_layout), ("segments", segments_layout)):
            runs = []
            for _ in range(args.repeats):
                CACHE_DIR.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(prefix="history-layout-", dir=CACHE_DIR) as folder:
                    runs.append(measure(source, Path(folder), args.increment))
            figures[layout] = median_of(runs)
            print(
                f"x{scale} {layout}: "
                + ", ".join(
                    f"{key} {value / 2**20:.1f} MiB"
                    if key.endswith("bytes")
                    else f"{key} {value:.2f}"
                    if isinstance(value, float)
                    else f"{key} {value}"
                    for key, value in figures[layout].items()
                ),
                flush=True,
            )
        results["scales"][str(scale)] = figures
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
