"""`make bench`: what the pipeline costs, against references measured in the same run.

    python -m bench.run [--repeats N] [--scales "1 10"] [--sweep 8] [--quick] [--output FILE]

Everything runs in temporary clones of HEAD (this checkout's .venv and demo
source are symlinked in), never in the working tree. Every figure is the
median of `--repeats` runs, and each comparison's two sides alternate within
a repeat (A B, then B A), so slow spells of a shared machine hit both sides.
Each command runs in a fresh `bench/rusage.py` process, which reports wall
time, CPU time and peak RSS for it and everything it waited for.

Sections: a fresh clone's first `make repro` (install, demo source,
pipeline; nothing linked, cold package cache), DVC overhead (repro --force vs the four stage commands), no-op
repro vs status, an incremental train change vs the full run (and which
stages ran), each stage against its physical reference (bench/probes.py) at
every scale, a sweep of queued experiments with -j 2 vs -j 1, and predict
latency/throughput. Results: a table on the terminal and a JSON file with the
machine, the library versions and every raw run.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bench import stats
from bench.probes import RESULT_PREFIX
from src.pipeline import config
from src.pipeline.adapter import PACKAGE as DATASETS_PACKAGE
from src.pipeline.history import RECORDED_AT
from src.pipeline.params import load_adapter, load_params, update_params
from src.tools.clones import working_clone
from src.tools.venv import venv_env

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results.json"
QUICK_RESULTS = BENCH_DIR / "results-quick.json"
# Scaled sources are rebuilt only when the adapter's package (its demo
# builder) changes: the cache is keyed by a hash of its files.
CACHE_DIR = BENCH_DIR / ".cache"
STAGES = ("gather", "featurize", "train", "evaluate")
# Each stage's physical reference (bench/probes.py); evaluate has none.
REFERENCES = {"gather": "bare_scan", "featurize": "bare_parquet", "train": "bare_fit"}
# The hyperparameter the incremental and sweep sections change.
HGB = "train.hist_gradient_boosting"
PACKAGES = ("dvc", "dvclive", "scikit-learn", "numpy", "scipy", "pandas", "pyarrow", "SQLAlchemy", "pydantic",
            "psutil", "joblib", "threadpoolctl", "celery")
TIMEOUT_S = 3600


class BenchError(RuntimeError):
    pass


# --- running and measuring ---------------------------------------------------

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

    def measure(self, section: str, name: str, command: list[str], cwd: Path, scale: int, repeat: int,
                env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        """Run `command` under bench/rusage.py; record and return the run (with its output)."""
        out = self.work / "rusage.json"
        python = sys.executable
        result = subprocess.run([python, str(BENCH_DIR / "rusage.py"), str(out), "--", *command], cwd=cwd,
                                env=env or clone_env(cwd), text=True, capture_output=True, timeout=TIMEOUT_S)
        usage = json.loads(out.read_text())
        run = {"section": section, "name": name, "scale": scale, "repeat": repeat, **usage, **extra}
        if result.returncode != 0:
            run["error"] = (result.stdout + result.stderr)[-2000:]
            print(f"  ! {name} failed ({result.returncode}): {run['error'][-400:]}", file=sys.stderr)
        probe = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if probe:
            run["probe"] = json.loads(probe[-1].removeprefix(RESULT_PREFIX))
        self.runs.append(run)
        print(f"  {section:<11} {name:<22} x{scale:<3} #{repeat}  wall {run['wall_s']:7.2f} s  "
              f"cpu {run['cpu_s']:7.2f} s  rss {run['max_rss_bytes'] / 2**20:7.0f} MiB", flush=True)
        return {**run, "stdout": result.stdout}

    def probe(self, name: str, clone: Path, scale: int, repeat: int, env=None) -> dict[str, Any]:
        return self.measure("stage", name, [sys.executable, str(BENCH_DIR / "probes.py"), name], clone, scale,
                            repeat, env=env)


def stages_ran(dvc_output: str) -> list[str]:
    """Stage names that `dvc repro` ran (not restored from the run-cache, not skipped)."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def stage_commands(clone: Path) -> dict[str, list[str]]:
    """Each stage's command as dvc.yaml gives it (what `dvc repro` runs), as argv."""
    stages = yaml.safe_load((clone / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: shlex.split(stages[name]["cmd"]) for name in STAGES}


# --- clones and sources --------------------------------------------------------

def make_clone(destination: Path, source_dir: Path) -> Path:
    """A clone of HEAD with this checkout's .venv and the given source folder linked in."""
    return working_clone(destination, source_dir=source_dir, venv=config.VENV)


def package_digest(package: Path) -> str:
    """SHA-256 over a package's files (names and bytes), caches excluded."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        with open(path, "rb") as handle:
            file_digest = hashlib.file_digest(handle, "sha256").hexdigest()
        digest.update(f"{path.relative_to(package).as_posix()} {file_digest}\n".encode())
    return digest.hexdigest()


def scaled_source(scale: int) -> Path:
    """A folder holding the active adapter's demo source at `scale` (this checkout's own for scale 1)."""
    if scale == 1:
        if not config.SOURCE_DB.exists():
            raise BenchError(f"{config.SOURCE_DB} missing: run `make source`")
        return config.SOURCE_DIR
    adapter, _ = load_adapter(load_params())
    package = config.ROOT.joinpath(*DATASETS_PACKAGE.split("."), adapter.name)
    prefix = f"source-{adapter.name}-x{scale}-"
    folder = CACHE_DIR / f"{prefix}{package_digest(package)[:12]}"
    database = folder / config.SOURCE_DB.name
    if not database.exists():
        for stale in CACHE_DIR.glob(f"{prefix}*"):
            shutil.rmtree(stale)
        print(f"building the x{scale} source in {folder} (cached for later runs)...", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        sh([sys.executable, "-m", "src.tools.source", "--scale", str(scale), "--output", str(database)],
           cwd=config.ROOT)
    return folder


def last_recorded_day(database: Path) -> str:
    """The day of the newest version in the source: as_of for a scaled source, so every copy is read.

    The day, not the moment: a bare date means the end of that day (src/pipeline/history.py).
    """
    adapter, _ = load_adapter(load_params())
    tables = [table for table in adapter.source_tables.tables.values() if RECORDED_AT in table.c]
    if not tables:
        raise BenchError(f"no source table of adapter {adapter.name!r} has a {RECORDED_AT} column")
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            latest = max(connection.execute(sa.select(sa.func.max(table.c[RECORDED_AT]))).scalar_one() or ""
                         for table in tables)
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


# --- sections ------------------------------------------------------------------

def pipeline_section(bench: Bench, clone: Path) -> None:
    """DVC overhead, no-op repro vs status, incremental train change vs the full run."""
    dvc = str(clone / ".venv" / "bin" / "dvc")
    direct = " && ".join(shlex.join(command) for command in stage_commands(clone).values())
    print("pipeline: first repro (fills the clone's DVC cache; not counted)", flush=True)
    bench.measure("warmup", "dvc repro", [dvc, "repro"], clone, 1, 0)
    for repeat in range(1, bench.repeats + 1):
        pair = [("dvc repro --force", [dvc, "repro", "--force"]), ("stages direct", ["sh", "-c", direct])]
        for name, command in pair if repeat % 2 else pair[::-1]:
            bench.measure("overhead", name, command, clone, 1, repeat)
    for repeat in range(1, bench.repeats + 1):
        pair = [("dvc repro (no-op)", [dvc, "repro"]), ("dvc status", [dvc, "status"])]
        for name, command in pair if repeat % 2 else pair[::-1]:
            run = bench.measure("noop", name, command, clone, 1, repeat)
            if name.startswith("dvc repro"):
                bench.runs[-1]["stages_ran"] = stages_ran(run["stdout"])
    original = get_param(clone, f"{HGB}.max_iter")
    for repeat in range(1, bench.repeats + 1):
        # A value not used before in this clone: the run-cache cannot answer it.
        set_param(clone, f"{HGB}.max_iter", original - repeat)
        run = bench.measure("incremental", "dvc repro (train change)", [dvc, "repro"], clone, 1, repeat,
                            change=f"{HGB}.max_iter={original - repeat}")
        bench.runs[-1]["stages_ran"] = stages_ran(run["stdout"])
    set_param(clone, f"{HGB}.max_iter", original)
    sh([dvc, "repro"], cwd=clone, env=clone_env(clone))  # back to HEAD's outputs (from the run-cache)


def stage_section(bench: Bench, clone: Path, scale: int, profile: bool) -> None:
    """Each stage run directly against its physical reference, with rows, CPU and peak memory."""
    env = clone_env(clone)
    commands = stage_commands(clone)
    for repeat in range(1, bench.repeats + 1):
        for stage in STAGES:
            pair = [(stage, commands[stage])]
            if stage in REFERENCES:
                pair.append((REFERENCES[stage], None))
            for name, command in pair if repeat % 2 else pair[::-1]:
                if command is None:
                    bench.probe(name, clone, scale, repeat, env)
                else:
                    bench.measure("stage", name, command, clone, scale, repeat, env)
            if stage == "gather" and (scale == 1 or repeat == 1):
                # How much of gather is the SQL itself (once at larger scales: it is slow there).
                bench.probe("query_scan", clone, scale, repeat, env)
        rows = {
            "gather": pq_rows(clone / config.SNAPSHOT.relative_to(config.ROOT)),
            "featurize": pq_rows(clone / config.SNAPSHOT.relative_to(config.ROOT)),
            "train": pq_rows(clone / config.TRAIN_FEATURES.relative_to(config.ROOT)),
            "evaluate": pq_rows(clone / config.TEST_FEATURES.relative_to(config.ROOT)),
        }
        for run in stats.select(bench.runs, section="stage", scale=scale, repeat=repeat):
            stage = next((s for s, ref in REFERENCES.items() if ref == run["name"]), run["name"])
            run["rows"] = rows.get(stage)
    if profile:
        out = bench.work / f"gather-x{scale}.prof"
        python, *arguments = commands["gather"]
        sh([python, "-m", "cProfile", "-o", str(out), *arguments], cwd=clone, env=env)
        bench.profiles[f"gather x{scale}"] = profile_text(out)


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def profile_text(path: Path, lines: int = 14) -> str:
    import io
    import pstats

    buffer = io.StringIO()
    pstats.Stats(str(path), stream=buffer).sort_stats("tottime").print_stats(lines)
    text = buffer.getvalue()
    return text[text.index("ncalls"):] if "ncalls" in text else text


def finished_experiments(clone: Path) -> int:
    """Experiments whose results are committed (refs/exps/<baseline>/<name>); cheap to poll."""
    refs = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=clone).split()
    return sum(1 for ref in refs if len(ref.split("/")) >= 5 and ref.split("/")[2] not in ("celery", "exec"))


def sweep_section(bench: Bench, clone: Path, experiments: int, max_iter: int = 20) -> None:
    """`dvc queue start -j 2` against `-j 1` on the same set of cheap experiments."""
    dvc = str(clone / ".venv" / "bin" / "dvc")
    # Queued runs start from a commit: record the clone's current outputs as one,
    # so each experiment reruns only train and evaluate. Queued temp copies find
    # the clone's demo source themselves (src/pipeline/config.py).
    env = clone_env(clone)
    sh(["git", "add", "dvc.lock", config.PARAMS_FILE.name], cwd=clone)
    sh(["git", "commit", "-q", "-m", "bench: baseline for queued experiments", "--allow-empty"], cwd=clone)
    serial = 0
    for repeat in range(1, bench.repeats + 1):
        for jobs in ((1, 2) if repeat % 2 else (2, 1)):
            for _ in range(experiments):
                serial += 1  # every experiment a new learning rate: no run-cache hit
                sh([dvc, "exp", "run", "--queue", "-S", f"{HGB}.max_iter={max_iter}",
                    "-S", f"{HGB}.learning_rate={0.05 + serial / 10000:.4f}"], cwd=clone, env=env)
            before = finished_experiments(clone)
            started = time.perf_counter()
            restarts = start_workers(clone, dvc, env, jobs, experiments, before, started + TIMEOUT_S)
            wall = time.perf_counter() - started
            status = sh([dvc, "queue", "status"], cwd=clone, env=env)
            bench.runs.append({"section": "sweep", "name": f"queue -j {jobs}", "scale": 1, "repeat": repeat,
                               "wall_s": wall, "cpu_s": None, "max_rss_bytes": None, "returncode": 0,
                               "experiments": experiments, "max_iter": max_iter, "worker_restarts": restarts,
                               "queue_status": status.strip().splitlines()[-1:]})
            print(f"  sweep       queue -j {jobs}  {experiments} experiments  #{repeat}  wall {wall:7.2f} s"
                  f"  ({restarts} worker restarts)", flush=True)
            wait_for_idle_workers(clone, dvc, env)


def start_workers(clone: Path, dvc: str, env: dict[str, str], jobs: int, experiments: int, before: int,
                  deadline: float) -> int:
    """`dvc queue start -j N`, then wait until `experiments` more have finished; return the restarts.

    Workers sometimes exit while tasks are still queued (dvc#10562); a user then
    runs `dvc queue start` again, and so does this, inside the timed region.
    """
    def start() -> None:
        # The workers outlive `dvc queue start` and inherit its output: don't capture it.
        subprocess.run([dvc, "queue", "start", "-j", str(jobs)], cwd=clone, env=env, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    start()
    restarts, missing_since = 0, None
    while finished_experiments(clone) - before < experiments:
        if time.perf_counter() > deadline or queue_failed(clone):
            raise BenchError(f"queued experiments did not finish:\n{sh([dvc, 'queue', 'status'], clone, env)}")
        if workers_alive(clone):
            missing_since = None
        elif missing_since is None:
            missing_since = time.perf_counter()
        elif time.perf_counter() - missing_since > 1.0:  # gone for good, not between spawn and start
            restarts, missing_since = restarts + 1, None
            start()
        time.sleep(0.25)
    return restarts


def workers_alive(clone: Path) -> bool:
    """Whether a queue worker of this clone is running (psutil: far cheaper than `dvc queue status`)."""
    import psutil

    for process in psutil.process_iter(["cmdline", "cwd"]):
        if "queue-worker" in (process.info["cmdline"] or []) and process.info["cwd"] == str(clone):
            return True
    return False


def queue_failed(clone: Path) -> bool:
    # DVC keeps failed queued runs under this ref (cheap to check, unlike `dvc queue status`).
    return bool(sh(["git", "for-each-ref", "refs/exps/celery/failed"], cwd=clone).strip())


def wait_for_idle_workers(clone: Path, dvc: str, env: dict[str, str]) -> None:
    """Workers exit after 10 s idle; the next sweep must start with none.

    Not `dvc queue stop`: its shutdown broadcast can outlive the workers it was
    meant for and stop the next sweep's workers after their first task.
    """
    for _ in range(240):
        if not workers_alive(clone):
            return
        time.sleep(0.5)
    raise BenchError("queue workers did not exit")


# The README's promise for a newcomer: a fresh clone's first `make repro`.
FIRST_RUN_STEPS = (("install", ["make", "setup"]), ("source", ["make", "source"]), ("pipeline", ["make", "repro"]))


def first_run_env(uv_cache: Path) -> dict[str, str]:
    """A newcomer's shell: no venv on PATH, no SOURCE_URL, and an empty uv cache (nothing downloaded yet)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", config.SOURCE_URL_ENV)}
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


def predict_section(bench: Bench, clone: Path) -> None:
    for repeat in range(1, bench.repeats + 1):
        bench.probe("predict", clone, 1, repeat)
        bench.runs[-1]["section"] = "predict"


# --- figures, targets, report ------------------------------------------------

def _med(runs: list[dict], key: str = "wall_s") -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None and run.get("returncode") == 0]
    return stats.median(values) if values else None


def figures(runs: list[dict], scales: list[int]) -> dict[str, Any]:
    """Medians and same-run ratios from the raw runs."""
    fig: dict[str, Any] = {}
    full = _med(stats.select(runs, section="overhead", name="dvc repro --force"))
    direct = _med(stats.select(runs, section="overhead", name="stages direct"))
    fig["overhead"] = {"dvc_repro_force_s": full, "stages_direct_s": direct, "ratio": stats.ratio(full, direct),
                       "cpu_ratio": stats.ratio(_med(stats.select(runs, section="overhead", name="dvc repro --force"),
                                                     "cpu_s"),
                                                _med(stats.select(runs, section="overhead", name="stages direct"),
                                                     "cpu_s"))}
    noop = _med(stats.select(runs, section="noop", name="dvc repro (no-op)"))
    status = _med(stats.select(runs, section="noop", name="dvc status"))
    fig["noop"] = {"dvc_repro_s": noop, "dvc_status_s": status, "ratio": stats.ratio(noop, status),
                   "cpu_ratio": stats.ratio(_med(stats.select(runs, section="noop", name="dvc repro (no-op)"), "cpu_s"),
                                            _med(stats.select(runs, section="noop", name="dvc status"), "cpu_s")),
                   "stages_ran": sorted({s for r in stats.select(runs, section="noop")
                                         for s in r.get("stages_ran", [])})}
    incremental_runs = stats.select(runs, section="incremental")
    incremental = _med(incremental_runs)
    fig["incremental"] = {"dvc_repro_s": incremental, "full_s": full, "ratio": stats.ratio(incremental, full),
                          "stages_ran": [r.get("stages_ran") for r in incremental_runs]}
    fig["stages"] = {}
    for scale in scales:
        for stage in STAGES:
            own = stats.select(runs, section="stage", name=stage, scale=scale)
            if not own:
                continue
            ref_runs = stats.select(runs, section="stage", name=REFERENCES.get(stage), scale=scale)
            wall, rows = _med(own), _med(own, "rows")
            entry = {"wall_s": wall, "cpu_s": _med(own, "cpu_s"), "max_rss_bytes": _med(own, "max_rss_bytes"),
                     "rows": rows, "rows_per_s": stats.ratio(rows, wall), "reference": REFERENCES.get(stage),
                     "reference_wall_s": _med(ref_runs), "ratio": stats.ratio(wall, _med(ref_runs)),
                     "cpu_ratio": stats.ratio(_med(own, "cpu_s"), _med(ref_runs, "cpu_s"))}
            if stage == "gather":
                query = stats.select(runs, section="stage", name="query_scan", scale=scale)
                entry["query_sql_s"] = _med([r["probe"] | {"returncode": 0} for r in query], "sql_s")
                snapshot = [r["probe"] for r in stats.select(runs, section="stage", name="bare_parquet", scale=scale)]
                entry["snapshot_arrow_bytes"] = snapshot[0]["snapshot_arrow_bytes"] if snapshot else None
            fig["stages"][f"{stage} x{scale}"] = entry
    if len(scales) > 1:
        low, high = min(scales), max(scales)
        fig["scaling"] = {"from": low, "to": high}
        for stage in STAGES:
            a, b = fig["stages"].get(f"{stage} x{low}"), fig["stages"].get(f"{stage} x{high}")
            if a and b and a["rows"] and b["rows"]:
                fig["scaling"][stage] = {
                    "rows_growth": b["rows"] / a["rows"], "time_growth": stats.ratio(b["wall_s"], a["wall_s"]),
                    "time_per_row_ratio": stats.ratio(b["wall_s"] / b["rows"], a["wall_s"] / a["rows"]),
                    "rss_growth": stats.ratio(b["max_rss_bytes"], a["max_rss_bytes"])}
    sweep1 = _med(stats.select(runs, section="sweep", name="queue -j 1"))
    sweep2 = _med(stats.select(runs, section="sweep", name="queue -j 2"))
    fig["sweep"] = {"j1_s": sweep1, "j2_s": sweep2, "speedup": stats.ratio(sweep1, sweep2),
                    "experiments": next((r.get("experiments") for r in stats.select(runs, section="sweep")), None)}
    steps = {step: _med(stats.select(runs, section="first_run", name=step)) for step, _ in FIRST_RUN_STEPS}
    if any(value is not None for value in steps.values()):
        first = stats.select(runs, section="first_run")
        totals = []  # only repeats whose every step succeeded: a failed step would shorten the sum
        for repeat in sorted({run["repeat"] for run in first}):
            own = stats.select(first, repeat=repeat)
            if len(own) == len(FIRST_RUN_STEPS) and all(run.get("returncode") == 0 for run in own):
                totals.append(sum(run["wall_s"] for run in own))
        fig["first_run"] = {**{f"{step}_s": value for step, value in steps.items()},
                            "total_s": stats.median(totals) if totals else None,
                            "failed_runs": sum(1 for run in first if run.get("returncode") != 0)}
    predict_runs = [r["probe"] for r in stats.select(runs, section="predict") if r.get("probe")]
    if predict_runs:
        latencies = [x for p in predict_runs for x in p["single_latencies_s"]]
        throughput = [p["batch_rows"] / w for p in predict_runs for w in p["batch_walls_s"]]
        fig["predict"] = {"api": predict_runs[0]["api"], "single_p50_ms": stats.percentile(latencies, 50) * 1000,
                          "single_p99_ms": stats.percentile(latencies, 99) * 1000, "single_calls": len(latencies),
                          "batch_rows": predict_runs[0]["batch_rows"], "batch_rows_per_s": stats.median(throughput)}
    return fig


def targets(fig: dict[str, Any], scales: list[int]) -> list[dict]:
    out = [
        stats.check("fresh clone's first make repro (s)", fig.get("first_run", {}).get("total_s"), 90, "<=",
                    "install + demo source + pipeline, cold package cache"),
        stats.check("DVC overhead: repro --force / stages direct", fig["overhead"]["ratio"], 1.10, "<="),
        stats.check("no-op dvc repro / dvc status", fig["noop"]["ratio"], 1.2, "<="),
    ]
    ran = fig["incremental"]["stages_ran"]
    out.append(stats.verdict("incremental train change runs only train, evaluate", fig["incremental"]["ratio"],
                             bool(ran) and all(r == ["train", "evaluate"] for r in ran),
                             "value: time / full run; stages ran: " + "; ".join(", ".join(r or []) for r in ran)))
    for scale in scales:
        gather = fig["stages"].get(f"gather x{scale}")
        if gather:
            out.append(stats.check(f"gather / bare scan (x{scale})", gather["ratio"], 2.0, "<=",
                                   f"SQL alone {stats.fmt(gather.get('query_sql_s'))} s "
                                   f"of {stats.fmt(gather['wall_s'])} s"))
    if "scaling" in fig:
        high = fig["scaling"]["to"]
        for stage in STAGES:
            growth = fig["scaling"].get(stage)
            if growth:
                out.append(stats.check(f"{stage}: time per row x{high} / x{fig['scaling']['from']}",
                                       growth["time_per_row_ratio"], 1.2, "<="))
        gather = fig["stages"].get(f"gather x{high}")
        if gather and gather.get("snapshot_arrow_bytes"):
            out.append(stats.check(f"gather peak RSS x{high} / snapshot in memory",
                                   stats.ratio(gather["max_rss_bytes"], gather["snapshot_arrow_bytes"]), 2.0, "<=",
                                   f"{stats.fmt(gather['max_rss_bytes'], 'MiB')} MiB vs "
                                   f"{stats.fmt(float(gather['snapshot_arrow_bytes']), 'MiB')} MiB"))
    out.append(stats.check("sweep speed-up -j 2 over -j 1", fig["sweep"]["speedup"], 1.6, ">="))
    return out


def report(results: dict[str, Any]) -> str:
    fig, mib = results["figures"], lambda v: stats.fmt(None if v is None else float(v), "MiB")
    parts = [f"Benchmark of {results['commit'][:10]} on {results['machine']['cpu']} "
             f"({results['machine']['cores']} cores), {results['config']['repeats']} repeats, "
             f"medians; {results['duration_s'] / 60:.0f} min in all.", ""]
    o, n, i = fig["overhead"], fig["noop"], fig["incremental"]
    parts.append(stats.table(["comparison", "measured (s)", "reference (s)", "ratio", "CPU ratio"], [
        ["dvc repro --force vs the four stage commands", stats.fmt(o["dvc_repro_force_s"]),
         stats.fmt(o["stages_direct_s"]), stats.fmt(o["ratio"], "x"), stats.fmt(o.get("cpu_ratio"), "x")],
        ["no-op dvc repro vs dvc status", stats.fmt(n["dvc_repro_s"]), stats.fmt(n["dvc_status_s"]),
         stats.fmt(n["ratio"], "x"), stats.fmt(n.get("cpu_ratio"), "x")],
        ["train hyperparameter change vs full run", stats.fmt(i["dvc_repro_s"]), stats.fmt(i["full_s"]),
         stats.fmt(i["ratio"], "x"), "–"],
        [f"sweep of {fig['sweep'].get('experiments')} queued experiments, -j 2 vs -j 1",
         stats.fmt(fig["sweep"]["j2_s"]), stats.fmt(fig["sweep"]["j1_s"]),
         f"speed-up {stats.fmt(fig['sweep']['speedup'], 'x')}", "–"],
    ]))
    parts += ["", stats.table(
        ["stage", "rows", "wall (s)", "CPU (s)", "peak RSS (MiB)", "rows/s", "reference", "ref. wall (s)", "ratio",
         "CPU ratio"],
        [[name, stats.fmt(None if e["rows"] is None else int(e["rows"])), stats.fmt(e["wall_s"]),
          stats.fmt(e["cpu_s"]), mib(e["max_rss_bytes"]), stats.fmt(e["rows_per_s"]), e["reference"] or "–",
          stats.fmt(e["reference_wall_s"]), stats.fmt(e["ratio"], "x"), stats.fmt(e.get("cpu_ratio"), "x")]
         for name, e in fig["stages"].items()])]
    if "scaling" in fig:
        s = fig["scaling"]
        parts += ["", stats.table(
            ["stage", f"rows x{s['to']}/x{s['from']}", "time", "time per row", "peak RSS"],
            [[stage, stats.fmt(g["rows_growth"], "x"), stats.fmt(g["time_growth"], "x"),
              stats.fmt(g["time_per_row_ratio"], "x"), stats.fmt(g["rss_growth"], "x")]
             for stage, g in s.items() if isinstance(g, dict)])]
    if "first_run" in fig:
        f = fig["first_run"]
        parts += ["", f"fresh clone's first make repro: {stats.fmt(f['total_s'])} s = install "
                      f"{stats.fmt(f['install_s'])} s + demo source {stats.fmt(f['source_s'])} s + pipeline "
                      f"{stats.fmt(f['pipeline_s'])} s (medians; {f['failed_runs']} failed runs)"]
    if "predict" in fig:
        p = fig["predict"]
        parts += ["", f"predict ({p['api']}): single row p50 {p['single_p50_ms']:.2f} ms, "
                      f"p99 {p['single_p99_ms']:.2f} ms over {p['single_calls']} calls; "
                      f"batch of {p['batch_rows']:,} rows {p['batch_rows_per_s']:,.0f} rows/s"]
    parts += ["", stats.target_table(results["targets"])]
    return "\n".join(parts)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu or platform.machine(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
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
    parser.add_argument("--output", type=Path, default=None,
                        help=f"results file (default {RESULTS.relative_to(config.ROOT)}; quick "
                             f"{QUICK_RESULTS.relative_to(config.ROOT)})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clones")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.scales = [int(s) for s in (args.scales or ("1" if args.quick else "1 10")).split()]
    args.sweep = args.sweep or (4 if args.quick else 8)
    args.output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    if args.repeats < 1 or not args.scales or min(args.scales) < 1 or args.sweep < 1:
        parser.error("repeats, scales and sweep must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
    commit = sh(["git", "rev-parse", "HEAD"], cwd=config.ROOT).strip()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(work, args.repeats)
    print(f"bench: {commit[:10]}, {args.repeats} repeats, scales {args.scales}, work in {work}", flush=True)
    scaled_as_of: dict[str, str] = {}
    try:
        print("first run of a fresh clone", flush=True)
        first_run_section(bench)
        base = make_clone(work / "x1", scaled_source(1))
        pipeline_section(bench, base)
        for scale in args.scales:
            clone = base
            if scale != 1:
                source = scaled_source(scale)
                clone = make_clone(work / f"x{scale}", source)
                scaled_as_of[str(scale)] = last_recorded_day(source / config.SOURCE_DB.name)
                set_param(clone, "gather.as_of", scaled_as_of[str(scale)])
            print(f"stages at x{scale}", flush=True)
            stage_section(bench, clone, scale, profile=scale == min(args.scales))
            if scale != 1 and not args.keep:
                shutil.rmtree(clone)
        # The stage runs rewrote the x1 outputs with the same bytes: dvc.lock still holds.
        sweep_section(bench, base, args.sweep)
        predict_section(bench, base)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    fig = figures(bench.runs, args.scales)
    results = {
        "schema": stats.RESULTS_SCHEMA,
        "command": "make bench " + " ".join(f"{k}={v}" for k, v in (
            ("BENCH_REPEATS", args.repeats), ("BENCH_SCALES", '"' + " ".join(map(str, args.scales)) + '"'),
            ("BENCH_SWEEP", args.sweep))) + (" BENCH_QUICK=1" if args.quick else ""),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - clock,
        "commit": commit,
        "quick": args.quick,
        "config": {"repeats": args.repeats, "scales": args.scales, "sweep_experiments": args.sweep,
                   "scaled_as_of": scaled_as_of, "load_average_at_end": list(os.getloadavg())},
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
    args.output.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print("\n" + results["table"] + f"\n\nwrote {args.output}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"bench: error: {error}")
