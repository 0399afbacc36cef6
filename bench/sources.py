"""Clones and sources: a clone of HEAD per scale, the scaled demo sources (cached), params edits."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.measure import BENCH_DIR, BenchError, sh
from src.pipeline import config, files
from src.pipeline.adapter import PACKAGE as DATASETS_PACKAGE
from src.pipeline.dataset import load_adapter
from src.pipeline.params import load_params, update_params
from src.pipeline.source.history import RECORDED_AT
from src.tools.clones import working_clone

# Scaled sources are rebuilt only when the adapter's package (its demo
# builder) changes: the cache is keyed by a hash of its files.
CACHE_DIR = BENCH_DIR / ".cache"


def make_clone(destination: Path, source_dir: Path) -> Path:
    """A clone of HEAD with this checkout's .venv and the given source folder linked in."""
    return working_clone(destination, source_dir=source_dir, venv=config.VENV)


def package_digest(package: Path) -> str:
    """SHA-256 over a package's files (names and bytes), caches excluded."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(package).as_posix()} {files.file_digest(path)}\n".encode())
    return digest.hexdigest()


def scaled_source(scale: int) -> Path:
    """A folder holding the active adapter's demo source at `scale` (this checkout's own for scale 1)."""
    if scale == 1:
        if not config.SOURCE_DB.exists():
            raise BenchError(f"{config.SOURCE_DB} missing: run `make source`")
        return config.SOURCE_DIR
    adapter, _ = load_adapter(load_params())
    if adapter.build_demo_source is None:  # a fork's ingested history has one size: its own
        raise BenchError(
            f"scale {scale}: dataset adapter {adapter.name!r} has no demo builder to scale its source; "
            f"run `make bench BENCH_SCALES=1`"
        )
    package = config.ROOT.joinpath(*DATASETS_PACKAGE.split("."), adapter.name)
    prefix = f"source-{adapter.name}-x{scale}-"
    folder = CACHE_DIR / f"{prefix}{package_digest(package)[:12]}"
    database = folder / config.SOURCE_DB.name
    if not database.exists():
        for stale in CACHE_DIR.glob(f"{prefix}*"):
            shutil.rmtree(stale)
        print(f"building the x{scale} source in {folder} (cached for later runs)...", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        sh(
            [sys.executable, "-m", "src.tools.source", "--scale", str(scale), "--output", str(database)],
            cwd=config.ROOT,
        )
    return folder


def last_recorded_day(database: Path) -> str:
    """The day of the newest version in the source: as_of for a scaled source, so every copy is read.

    The day, not the moment: a bare date means the end of that day (src/pipeline/source/history.py).
    """
    adapter, _ = load_adapter(load_params())
    tables = [table for table in adapter.source_tables.tables.values() if RECORDED_AT in table.c]
    if not tables:
        raise BenchError(f"no source table of adapter {adapter.name!r} has a {RECORDED_AT} column")
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            latest = max(
                connection.execute(sa.select(sa.func.max(table.c[RECORDED_AT]))).scalar_one() or "" for table in tables
            )
    finally:
        engine.dispose()
    if not latest:
        raise BenchError(f"{database} records nothing")
    return latest[:10]


def set_param(clone: Path, dotted: str, value: Any) -> None:
    """Edit one value of the clone's params.yaml (validated, comments kept)."""
    *parents, leaf = dotted.split(".")

    def change(document) -> None:
        node = document
        for key in parents:
            node = node[key]
        node[leaf] = value

    update_params(clone / config.PARAMS_FILE.name, change)


def get_param(clone: Path, dotted: str) -> Any:
    from ruamel.yaml import YAML

    node = YAML().load((clone / config.PARAMS_FILE.name).read_text())
    for key in dotted.split("."):
        node = node[key]
    return node
