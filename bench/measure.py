"""Running and measuring: one command under bench/rusage.py, recorded as a run.

The constants every section shares (the measured stages, their references)
live here too; bench/run.py is the command line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bench import stats
from bench.probes import RESULT_PREFIX
from src.pipeline import config
from src.tools.venv import venv_env

BENCH_DIR = Path(__file__).resolve().parent

STAGES = ("gather", "featurize", "train", "evaluate")

# Each stage's physical reference (bench/probes.py); evaluate has none.
REFERENCES = {"gather": "bare_scan", "featurize": "bare_parquet", "train": "bare_fit"}

# Every probe run beside a stage, for the stage's row count.
COMPANIONS = {
    "gather": ("bare_scan", "gather_rows", "query_scan"),
    "featurize": ("bare_parquet",),
    "train": ("bare_fit",),
}

# The hyperparameter the incremental and sweep sections change.
HGB = "train.hist_gradient_boosting"

TIMEOUT_S = 3600


class BenchError(RuntimeError):
    pass


def clone_env(clone: Path, **extra: str) -> dict[str, str]:
    """What a stage sees under `make`: the venv first on PATH, `src` from the clone, the clone's source."""
    return venv_env(clone / ".venv", PYTHONPATH=str(clone), **{config.SOURCE_URL_ENV: None, **extra})


def sh(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run an unmeasured helper command; its output, or BenchError with it."""
    result = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True, timeout=TIMEOUT_S)
    if result.returncode != 0:
        raise BenchError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Bench:
    def __init__(self, work: Path, repeats: int):
        self.work = work
        self.repeats = repeats
        self.runs: list[dict[str, Any]] = []
        self.profiles: dict[str, str] = {}
        self.skipped: dict[str, str] = {}  # section -> why it did not run

    def measure(
        self,
        section: str,
        name: str,
        command: list[str],
        cwd: Path,
        scale: int,
        repeat: int,
        env: dict[str, str] | None = None,
        timeout: float = TIMEOUT_S,
        **extra: Any,
    ) -> dict[str, Any]:
        """Run `command` under bench/rusage.py; record and return the run (with its output).

        A command still running after `timeout` is killed with everything it
        started, and recorded as a failed run.
        """
        out = self.work / "rusage.json"
        out.unlink(missing_ok=True)
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "rusage.py"), str(out), "--", *command],
            cwd=cwd,
            env=env or clone_env(cwd),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            usage = json.loads(out.read_text())
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            usage = {"wall_s": float(timeout), "cpu_s": None, "max_rss_bytes": None, "returncode": None}
            stderr += f"\nbench: killed after {timeout:.0f} s"
        run = {"section": section, "name": name, "scale": scale, "repeat": repeat, **usage, **extra}
        if run["returncode"] != 0:
            run["error"] = (stdout + stderr)[-2000:]
            print(f"  ! {name} failed ({run['returncode']}): {run['error'][-400:]}", file=sys.stderr)
        probe = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if probe:
            run["probe"] = json.loads(probe[-1].removeprefix(RESULT_PREFIX))
        self.runs.append(run)
        print(
            f"  {section:<11} {name:<22} x{scale:<3} #{repeat}  wall {run['wall_s']:7.2f} s  "
            f"cpu {stats.fmt(run['cpu_s']):>7} s  rss {mib(run['max_rss_bytes']):>7} MiB",
            flush=True,
        )
        return {**run, "stdout": stdout}

    def probe(self, name: str, clone: Path, scale: int, repeat: int, env=None) -> dict[str, Any]:
        return self.measure(
            "stage", name, [sys.executable, str(BENCH_DIR / "probes.py"), name], clone, scale, repeat, env=env
        )


def mib(value: float | None) -> str:
    return stats.fmt(None if value is None else float(value), "MiB")


def stages_ran(dvc_output: str) -> list[str]:
    """Stage names that `dvc repro` ran (not restored from the run-cache, not skipped)."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def stage_commands(clone: Path, every: bool = False) -> dict[str, list[str]]:
    """Each measured stage's command as dvc.yaml gives it (what `dvc repro` runs), as argv.

    `every`: all of dvc.yaml's stages in its order (the params check
    included), for the comparison with `dvc repro --force`.
    """
    stages = yaml.safe_load((clone / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: shlex.split(stage["cmd"]) for name, stage in stages.items() if every or name in STAGES}
