"""`make bench`: what the pipeline costs, against references measured in the same run.

    python -m bench.run [--repeats N] [--scales "1 10"] [--sweep 8] [--quick] [--sections a,b] [--output FILE]

Everything runs in temporary clones of HEAD (this checkout's .venv and demo
source are symlinked in), never in the working tree. Every figure is the
median of the runs that succeeded, reported with n and the failed runs; each
comparison's sides alternate within a repeat (A B, then B A), so slow spells
of a shared machine hit every side. Each command runs in a fresh
`bench/rusage.py` process, which reports wall time, CPU time and peak RSS for
it and everything it waited for.

Sections: a fresh clone's first `make repro` (install, demo source,
pipeline; nothing linked, cold package cache), DVC overhead (repro --force vs
the four stage commands), no-op repro vs status, an incremental train change
vs the full run (and which stages ran), each stage against its physical
reference (bench/probes.py) at every scale, with gather also against its old
SQLAlchemy-rows read path and the query alone, gather from a throwaway
PostgreSQL cluster, a sweep of queued experiments with -j 2 vs -j 1, and
predict latency/throughput. Results: a table on the terminal and a JSON file
with the machine, the library versions and every raw run.

The sections live in bench/sections/, one module each; bench/measure.py runs
and records a command, bench/sources.py makes the clones and scaled sources,
bench/figures.py, bench/targets.py and bench/report.py turn the raw runs into
the figures, the targets and the table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import stats
from bench.figures import figures
from bench.measure import BENCH_DIR, Bench, BenchError, clone_env, sh
from bench.report import report
from bench.sections.first_run import first_run_section
from bench.sections.pipeline import pipeline_section
from bench.sections.postgres import postgres_section
from bench.sections.predict import predict_section, serving_section
from bench.sections.stages import stage_section
from bench.sections.sweep import sweep_section
from bench.sources import last_recorded_day, make_clone, scaled_source, set_param
from bench.targets import targets
from src.pipeline import config

RESULTS = BENCH_DIR / "results.json"
QUICK_RESULTS = BENCH_DIR / "results-quick.json"
SECTIONS = ("first_run", "pipeline", "stages", "postgres", "sweep", "predict", "serving")

PACKAGES = (
    "dvc",
    "dvclive",
    "scikit-learn",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "SQLAlchemy",
    "pydantic",
    "psutil",
    "joblib",
    "threadpoolctl",
    "celery",
)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu or platform.machine(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(ImportError):
        import psutil

        info["memory_bytes"] = psutil.virtual_memory().total
    return info


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (default 3; quick 1)")
    parser.add_argument("--scales", default=None, help='source scales, e.g. "1 10" (default; quick "1")')
    parser.add_argument("--sweep", type=int, default=None, help="queued experiments per sweep (default 8; quick 4)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, scale 1, 4 experiments")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results file (default {RESULTS.relative_to(config.ROOT)}; quick "
        f"{QUICK_RESULTS.relative_to(config.ROOT)})",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary clones")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.scales = [int(s) for s in (args.scales or ("1" if args.quick else "1 10")).split()]
    args.sweep = args.sweep or (4 if args.quick else 8)
    args.output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    asked = [name.strip() for name in args.sections.split(",") if name.strip()]
    if not asked or set(asked) - set(SECTIONS):
        parser.error(f"--sections takes names from {','.join(SECTIONS)}; got {args.sections!r}")
    args.sections = [name for name in SECTIONS if name in asked]
    if args.repeats < 1 or not args.scales or min(args.scales) < 1 or args.sweep < 1:
        parser.error("repeats, scales and sweep must be positive")
    return args


def stage_scales(bench: Bench, base: Path, args: argparse.Namespace) -> dict[str, str]:
    """The stages section at every scale, each scaled source in its own clone; the as_of each scale used."""
    scaled_as_of: dict[str, str] = {}
    for scale in args.scales:
        clone = base
        if scale != 1:
            source = scaled_source(scale)
            clone = make_clone(bench.work / f"x{scale}", source)
            scaled_as_of[str(scale)] = last_recorded_day(source / config.SOURCE_DB.name)
            set_param(clone, "gather.as_of", scaled_as_of[str(scale)])
        print(f"stages at x{scale}", flush=True)
        stage_section(bench, clone, scale, profile=scale == min(args.scales))
        if scale != 1 and not args.keep:
            shutil.rmtree(clone)
    return scaled_as_of


def run_sections(bench: Bench, args: argparse.Namespace) -> dict[str, str]:
    """Every chosen section in SECTIONS order; the as_of each scaled source used."""
    chosen = set(args.sections)
    scaled_as_of: dict[str, str] = {}
    if "first_run" in chosen:
        print("first run of a fresh clone", flush=True)
        first_run_section(bench)
    base = make_clone(bench.work / "x1", scaled_source(1))
    if "pipeline" in chosen:
        pipeline_section(bench, base)
    else:
        sh([str(base / ".venv" / "bin" / "dvc"), "repro"], cwd=base, env=clone_env(base))
    if "stages" in chosen:
        scaled_as_of = stage_scales(bench, base, args)
    # The stage runs rewrote the x1 outputs with the same bytes: dvc.lock still holds.
    if "postgres" in chosen:
        postgres_section(bench, base)
    if "sweep" in chosen:
        sweep_section(bench, base, args.sweep)
    if "predict" in chosen:
        predict_section(bench, base)
    if "serving" in chosen:
        serving_section(bench, base)
    return scaled_as_of


def make_command(args: argparse.Namespace) -> str:
    """The `make bench` line that reproduces this run's settings."""
    return (
        "make bench "
        + " ".join(
            f"{k}={v}"
            for k, v in (
                ("BENCH_REPEATS", args.repeats),
                ("BENCH_SCALES", '"' + " ".join(map(str, args.scales)) + '"'),
                ("BENCH_SWEEP", args.sweep),
            )
        )
        + (" BENCH_QUICK=1" if args.quick else "")
        + ("" if args.sections == list(SECTIONS) else f" --sections {','.join(args.sections)}")
    )


def results_of(
    bench: Bench,
    args: argparse.Namespace,
    commit: str,
    started: dt.datetime,
    clock: float,
    scaled_as_of: dict[str, str],
) -> dict[str, Any]:
    """The results file's content: the settings, the machine, every raw run, the figures and targets, the table."""
    fig = figures(bench.runs, args.scales, bench.skipped)
    results = {
        "schema": stats.RESULTS_SCHEMA,
        "command": make_command(args),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - clock,
        "commit": commit,
        "quick": args.quick,
        "config": {
            "repeats": args.repeats,
            "scales": args.scales,
            "sweep_experiments": args.sweep,
            "sections": args.sections,
            "scaled_as_of": scaled_as_of,
            "load_average_at_end": list(os.getloadavg()),
        },
        "machine": machine(),
        "versions": versions(),
        "runs": bench.runs,
        "figures": fig,
        "targets": targets(fig, args.scales),
        "profiles": bench.profiles,
    }
    problems = stats.validate_results(results)
    if problems:
        raise BenchError("results are malformed: " + "; ".join(problems))
    results["table"] = report(results)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
    commit = sh(["git", "rev-parse", "HEAD"], cwd=config.ROOT).strip()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(work, args.repeats)
    print(f"bench: {commit[:10]}, {args.repeats} repeats, scales {args.scales}, work in {work}", flush=True)
    try:
        scaled_as_of = run_sections(bench, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results = results_of(bench, args, commit, started, clock, scaled_as_of)
    args.output.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print("\n" + results["table"] + f"\n\nwrote {args.output}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"bench: error: {error}")
