"""The first_run section: a fresh clone's first `make repro`, the README's promise for a newcomer."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bench.measure import Bench, sh
from src.pipeline import config

# The README's promise for a newcomer: a fresh clone's first `make repro`.
FIRST_RUN_STEPS = (("install", ["make", "setup"]), ("source", ["make", "source"]), ("pipeline", ["make", "repro"]))


def first_run_env(uv_cache: Path) -> dict[str, str]:
    """A newcomer's shell: no venv on PATH, no SOURCE_URL, and an empty uv cache (nothing downloaded yet)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", config.SOURCE_URL_ENV)
    }
    bin_dirs = {str(config.VENV / "bin"), str(Path(sys.prefix) / "bin")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p not in bin_dirs)
    env["UV_CACHE_DIR"] = str(uv_cache)
    return env


def first_run_section(bench: Bench) -> None:
    """A fresh clone's first `make repro`, split into its set-up, demo source and pipeline steps.

    Nothing is linked in: the clone installs its own .venv (with a cold uv
    cache, so packages are downloaded as on a new machine), builds its own
    source and runs the pipeline, exactly as the README's first command does.
    """
    for repeat in range(1, bench.repeats + 1):
        clone = bench.work / f"first-run-{repeat}"
        sh(["git", "clone", "-q", "--no-hardlinks", str(config.ROOT), str(clone)], cwd=bench.work)
        env = first_run_env(bench.work / f"uv-cache-{repeat}")
        for step, command in FIRST_RUN_STEPS:
            bench.measure("first_run", step, command, clone, 1, repeat, env=env)
        shutil.rmtree(clone, ignore_errors=True)
        shutil.rmtree(bench.work / f"uv-cache-{repeat}", ignore_errors=True)
