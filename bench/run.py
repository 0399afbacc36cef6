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
import signal
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
from src.pipeline import config, files
from src.pipeline.adapter import PACKAGE as DATASETS_PACKAGE
from src.pipeline.dataset import load_adapter
from src.pipeline.params import load_params, update_params
from src.pipeline.source.history import RECORDED_AT
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
# Every probe run beside a stage, for the stage's row count.
COMPANIONS = {"gather": ("bare_scan", "gather_rows", "query_scan"), "featurize": ("bare_parquet",),
              "train": ("bare_fit",)}
SECTIONS = ("first_run", "pipeline", "stages", "postgres", "sweep", "predict", "serving")
# The hyperparameter the incremental and sweep sections change.
HGB = "train.hist_gradient_boosting"
PACKAGES = ("dvc", "dvclive", "scikit-learn", "numpy", "scipy", "pandas", "pyarrow", "SQLAlchemy", "pydantic",
            "psutil", "joblib", "threadpoolctl", "celery")
TIMEOUT_S = 3600
# gather from PostgreSQL at 1x: SQLite takes seconds; ten minutes means something is wrong, not slow.
POSTGRES_TIMEOUT_S = 600


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
        self.skipped: dict[str, str] = {}  # section -> why it did not run

    def measure(self, section: str, name: str, command: list[str], cwd: Path, scale: int, repeat: int,
                env: dict[str, str] | None = None, timeout: float = TIMEOUT_S, **extra: Any) -> dict[str, Any]:
        """Run `command` under bench/rusage.py; record and return the run (with its output).

        A command still running after `timeout` is killed with everything it
        started, and recorded as a failed run.
        """
        out = self.work / "rusage.json"
        out.unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, str(BENCH_DIR / "rusage.py"), str(out), "--", *command], cwd=cwd,
                                   env=env or clone_env(cwd), text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
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
        print(f"  {section:<11} {name:<22} x{scale:<3} #{repeat}  wall {run['wall_s']:7.2f} s  "
              f"cpu {stats.fmt(run['cpu_s']):>7} s  rss {mib(run['max_rss_bytes']):>7} MiB", flush=True)
        return {**run, "stdout": stdout}

    def probe(self, name: str, clone: Path, scale: int, repeat: int, env=None) -> dict[str, Any]:
        return self.measure("stage", name, [sys.executable, str(BENCH_DIR / "probes.py"), name], clone, scale,
                            repeat, env=env)


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


# --- clones and sources --------------------------------------------------------

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
        raise BenchError(f"scale {scale}: dataset adapter {adapter.name!r} has no demo builder to scale its source; "
                         f"run `make bench BENCH_SCALES=1`")
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

    The day, not the moment: a bare date means the end of that day (src/pipeline/source/history.py).
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
    direct = " && ".join(shlex.join(command) for command in stage_commands(clone, every=True).values())
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
    """Each stage run directly against its physical reference, with rows, CPU and peak memory.

    gather has two more companions, every repeat at every scale: the old
    SQLAlchemy-rows read path (`gather_rows`, same work, same output bytes) and
    the query alone (`query_scan`). Their order rotates with the repeat.
    """
    env = clone_env(clone)
    commands = stage_commands(clone)
    for repeat in range(1, bench.repeats + 1):
        for stage in STAGES:
            group = [(stage, commands[stage])]
            if stage in REFERENCES:
                group.append((REFERENCES[stage], None))
            if stage == "gather":
                group += [("gather_rows", None), ("query_scan", None)]
            shift = (repeat - 1) % len(group)
            for name, command in group[shift:] + group[:shift]:
                if command is None:
                    bench.probe(name, clone, scale, repeat, env)
                else:
                    bench.measure("stage", name, command, clone, scale, repeat, env)
                if name == "train":
                    # evaluate loads only a model that dvc.lock vouches for: record the
                    # train stage's new outputs (untimed), as `dvc repro` would have.
                    sh([str(clone / ".venv" / "bin" / "dvc"), "commit", "-f", "-q", "train"], cwd=clone, env=env)
        rows = {
            "gather": pq_rows(clone / config.SNAPSHOT.relative_to(config.ROOT)),
            "featurize": pq_rows(clone / config.SNAPSHOT.relative_to(config.ROOT)),
            "train": pq_rows(clone / config.TRAIN_FEATURES.relative_to(config.ROOT)),
            "evaluate": pq_rows(clone / config.TEST_FEATURES.relative_to(config.ROOT)),
        }
        for run in stats.select(bench.runs, section="stage", scale=scale, repeat=repeat):
            stage = next((s for s, refs in COMPANIONS.items() if run["name"] in refs), run["name"])
            run["rows"] = rows.get(stage)
    if profile:
        out = bench.work / f"gather-x{scale}.prof"
        python, *arguments = commands["gather"]
        sh([python, "-m", "cProfile", "-o", str(out), *arguments], cwd=clone, env=env)
        bench.profiles[f"gather x{scale}"] = profile_text(out)


def postgres_section(bench: Bench, clone: Path) -> None:
    """gather from a throwaway PostgreSQL cluster holding the demo history, against its bare scan there.

    The cluster is tests/postgres.py's (initdb in a temporary folder, a Unix
    socket only). The demo source's tables are copied there as `python -m
    src.tools.source --url` copies them (probes.py load_history), so both
    backends hold the same rows; every gather run records whether it wrote
    SQLite's bytes.
    """
    try:
        from tests import postgres
    except ImportError as error:
        bench.skipped["postgres"] = f"tests/postgres.py is not importable ({error})"
    else:
        if postgres.server_bin_dir() is None:
            bench.skipped["postgres"] = f"no PostgreSQL server binaries (on PATH or {postgres.DEBIAN_BIN_DIRS})"
    if "postgres" in bench.skipped:
        print(f"postgres: skipped: {bench.skipped['postgres']}", flush=True)
        return
    snapshot = clone / config.SNAPSHOT.relative_to(config.ROOT)
    sqlite_md5 = files.file_digest(snapshot, "md5")
    with postgres.running_cluster() as cluster:
        url = cluster.url()
        env = clone_env(clone, **{config.SOURCE_URL_ENV: url})
        bench.measure("postgres", "load_history", [sys.executable, str(BENCH_DIR / "probes.py"), "load_history"],
                      clone, 1, 1, env=env)
        command = stage_commands(clone)["gather"]
        for repeat in range(1, bench.repeats + 1):
            pair = [("gather", command), ("bare_scan", None)]
            for name, step in pair if repeat % 2 else pair[::-1]:
                if step is None:
                    bench.measure("postgres", name, [sys.executable, str(BENCH_DIR / "probes.py"), name], clone, 1,
                                  repeat, env=env, timeout=POSTGRES_TIMEOUT_S)
                else:
                    bench.measure("postgres", name, step, clone, 1, repeat, env=env, timeout=POSTGRES_TIMEOUT_S)
                    same = snapshot.exists() and files.file_digest(snapshot, "md5") == sqlite_md5
                    bench.runs[-1]["same_bytes_as_sqlite"] = same
        bench.profiles["postgres cluster"] = cluster.report()
    # Back to the SQLite snapshot, whatever the PostgreSQL runs left.
    sh(command, cwd=clone, env=clone_env(clone))


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
            outcome = {"returncode": 0}
            try:
                restarts = start_workers(clone, dvc, sweep_env(env, jobs), jobs, experiments, before,
                                         started + TIMEOUT_S)
            except BenchError as error:
                # Counted as a failed run, never left out quietly; the next sweep starts from an empty queue.
                restarts, outcome = None, {"returncode": 1, "error": str(error)[-2000:]}
            wall = time.perf_counter() - started
            status = sh([dvc, "queue", "status"], cwd=clone, env=env)
            bench.runs.append({"section": "sweep", "name": f"queue -j {jobs}", "scale": 1, "repeat": repeat,
                               "wall_s": wall, "cpu_s": None, "max_rss_bytes": None, **outcome,
                               "experiments": experiments, "max_iter": max_iter, "worker_restarts": restarts,
                               "queue_status": status.strip().splitlines()[-1:]})
            print(f"  sweep       queue -j {jobs}  {experiments} experiments  #{repeat}  wall {wall:7.2f} s"
                  f"  ({restarts} worker restarts){'  FAILED' if outcome['returncode'] else ''}", flush=True)
            if outcome["returncode"]:
                sh([dvc, "queue", "remove", "--queued"], cwd=clone, env=env)
            wait_for_idle_workers(clone, dvc, env)
            if outcome["returncode"]:
                sh([dvc, "queue", "remove", "--failed"], cwd=clone, env=env)


def sweep_env(env: dict[str, str], jobs: int) -> dict[str, str]:
    """The workers' environment: `jobs` workers share the cores, as docs/sweeps.md tells users to.

    Where the pipeline takes its thread count from the machine (config.THREADS_ENV),
    each worker gets cores // jobs threads; -j 1 then uses every core.
    """
    name = getattr(config, "THREADS_ENV", None)
    if name is None:
        return env
    return {**env, name: str(max(1, (os.cpu_count() or 1) // jobs))}


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


def serving_section(bench: Bench, clone: Path) -> None:
    # SERVING_WORKERS and PIPELINE_THREADS as this machine sets them (unset: 1 worker, every core).
    for repeat in range(1, bench.repeats + 1):
        bench.probe("serve", clone, 1, repeat)
        bench.runs[-1]["section"] = "serving"


# --- figures, targets, report ------------------------------------------------

def _ok(run: dict) -> bool:
    return run.get("returncode") == 0


def _med(runs: list[dict], key: str = "wall_s") -> float | None:
    """The median over the runs that succeeded; `_runs` counts the others, so none drops out unseen."""
    values = [run[key] for run in runs if run.get(key) is not None and _ok(run)]
    return stats.median(values) if values else None


def _runs(runs: list[dict]) -> dict[str, int]:
    """How many runs a figure is the median of (n), and how many failed and are not in it."""
    return {"n": sum(1 for run in runs if _ok(run)), "failed": sum(1 for run in runs if not _ok(run))}


def _probe_med(runs: list[dict], key: str) -> float | None:
    values = [run["probe"][key] for run in runs if _ok(run) and run.get("probe", {}).get(key) is not None]
    return stats.median(values) if values else None


def _comparison(runs: list[dict], section: str, name: str, reference: str, **match: Any) -> dict[str, Any]:
    own, ref = stats.select(runs, section=section, name=name, **match), stats.select(runs, section=section,
                                                                                     name=reference, **match)
    wall, ref_wall = _med(own), _med(ref)
    return {"wall_s": wall, "reference_wall_s": ref_wall, "ratio": stats.ratio(wall, ref_wall),
            "cpu_ratio": stats.ratio(_med(own, "cpu_s"), _med(ref, "cpu_s")), "runs": _runs(own),
            "reference_runs": _runs(ref)}


def sweep_figures(runs: list[dict]) -> dict[str, Any]:
    """-j 2 against -j 1 over clean pairs only: a repeat where worker restarts hit both sides or neither.

    A restart (dvc#10562) costs a worker's start-up inside the timed region; on
    one side only it would tilt the speed-up.
    """
    sweep = stats.select(runs, section="sweep")
    pairs = []
    for repeat in sorted({run["repeat"] for run in sweep}):
        one, two = (stats.select(sweep, name=f"queue -j {jobs}", repeat=repeat) for jobs in (1, 2))
        if len(one) == 1 and len(two) == 1 and _ok(one[0]) and _ok(two[0]):
            r1, r2 = one[0]["worker_restarts"], two[0]["worker_restarts"]
            pairs.append({"repeat": repeat, "j1_s": one[0]["wall_s"], "j2_s": two[0]["wall_s"],
                          "restarts_j1": r1, "restarts_j2": r2, "clean": (r1 > 0) == (r2 > 0)})
    clean = [pair for pair in pairs if pair["clean"]]

    def speedup(chosen: list[dict]) -> float | None:
        return stats.median([p["j1_s"] / p["j2_s"] for p in chosen]) if chosen else None

    return {"j1_s": stats.median([p["j1_s"] for p in clean]) if clean else None,
            "j2_s": stats.median([p["j2_s"] for p in clean]) if clean else None,
            "speedup": speedup(clean), "clean_pairs": len(clean), "pairs": pairs,
            "speedup_all_pairs": speedup(pairs),
            "runs": {f"-j {jobs}": _runs(stats.select(sweep, name=f"queue -j {jobs}")) for jobs in (1, 2)},
            "experiments": next((r.get("experiments") for r in sweep), None)}


def figures(runs: list[dict], scales: list[int], skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Medians and same-run ratios from the raw runs, each with its n and its failed runs."""
    fig: dict[str, Any] = {"skipped": dict(skipped or {})}
    if stats.select(runs, section="overhead"):
        o = _comparison(runs, "overhead", "dvc repro --force", "stages direct")
        fig["overhead"] = {"dvc_repro_force_s": o.pop("wall_s"), "stages_direct_s": o.pop("reference_wall_s"), **o}
        n = _comparison(runs, "noop", "dvc repro (no-op)", "dvc status")
        fig["noop"] = {"dvc_repro_s": n.pop("wall_s"), "dvc_status_s": n.pop("reference_wall_s"), **n,
                       "stages_ran": sorted({s for r in stats.select(runs, section="noop")
                                             for s in r.get("stages_ran", [])})}
        incremental_runs = stats.select(runs, section="incremental")
        incremental, full = _med(incremental_runs), fig["overhead"]["dvc_repro_force_s"]
        fig["incremental"] = {"dvc_repro_s": incremental, "full_s": full, "ratio": stats.ratio(incremental, full),
                              "runs": _runs(incremental_runs),
                              "stages_ran": [r.get("stages_ran") for r in incremental_runs]}
    fig["stages"] = {}
    for scale in scales:
        for stage in STAGES:
            own = stats.select(runs, section="stage", name=stage, scale=scale)
            if not own:
                continue
            entry = _comparison(runs, "stage", stage, REFERENCES.get(stage), scale=scale)
            wall, rows = entry["wall_s"], _med(own, "rows")
            entry |= {"cpu_s": _med(own, "cpu_s"), "max_rss_bytes": _med(own, "max_rss_bytes"), "rows": rows,
                      "rows_per_s": stats.ratio(rows, wall), "reference": REFERENCES.get(stage)}
            if stage == "gather":
                query = stats.select(runs, section="stage", name="query_scan", scale=scale)
                old = stats.select(runs, section="stage", name="gather_rows", scale=scale)
                entry |= {"query_sql_s": _probe_med(query, "sql_s"), "query_runs": _runs(query),
                          "rows_path_s": _med(old), "rows_path_runs": _runs(old),
                          "rows_path_max_rss_bytes": _med(old, "max_rss_bytes"),
                          "vs_rows_path": stats.ratio(wall, _med(old)),
                          "rows_path_same_bytes": all(r["probe"]["same_bytes_as_stage"] for r in old if _ok(r))
                          if any(_ok(r) for r in old) else None}
            fig["stages"][f"{stage} x{scale}"] = entry
    if len(scales) > 1:
        low, high = min(scales), max(scales)
        fig["scaling"] = {"from": low, "to": high}
        for stage in STAGES:
            a, b = fig["stages"].get(f"{stage} x{low}"), fig["stages"].get(f"{stage} x{high}")
            if a and b and a["rows"] and b["rows"] and a["wall_s"] and b["wall_s"]:
                fig["scaling"][stage] = {
                    "rows_growth": b["rows"] / a["rows"], "time_growth": stats.ratio(b["wall_s"], a["wall_s"]),
                    "time_per_row_ratio": stats.ratio(b["wall_s"] / b["rows"], a["wall_s"] / a["rows"]),
                    "rss_growth": stats.ratio(b["max_rss_bytes"], a["max_rss_bytes"])}
    if stats.select(runs, section="postgres"):
        pg = _comparison(runs, "postgres", "gather", "bare_scan")
        gathers = [r for r in stats.select(runs, section="postgres", name="gather") if _ok(r)]
        sqlite = fig["stages"].get("gather x1", {}).get("wall_s")
        load = stats.select(runs, section="postgres", name="load_history")
        # A gather that failed wrote no snapshot: the promise is not shown, so it is not met.
        failed = len(gathers) < len(stats.select(runs, section="postgres", name="gather"))
        same = False if failed else all(run.get("same_bytes_as_sqlite") for run in gathers) if gathers else None
        fig["postgres"] = {**pg, "load_s": _med(load), "load_rows": _probe_med(load, "rows"),
                           "load_runs": _runs(load), "same_bytes_as_sqlite": same,
                           "vs_sqlite_gather": stats.ratio(pg["wall_s"], sqlite)}
    if stats.select(runs, section="sweep"):
        fig["sweep"] = sweep_figures(runs)
    first = stats.select(runs, section="first_run")
    if first:
        totals = []  # only repeats whose every step succeeded: a failed step would shorten the sum
        for repeat in sorted({run["repeat"] for run in first}):
            own = stats.select(first, repeat=repeat)
            if len(own) == len(FIRST_RUN_STEPS) and all(_ok(run) for run in own):
                totals.append(sum(run["wall_s"] for run in own))
        fig["first_run"] = {**{f"{step}_s": _med(stats.select(first, name=step)) for step, _ in FIRST_RUN_STEPS},
                            "total_s": stats.median(totals) if totals else None, "runs": {
                                "n": len(totals), "failed": len({r["repeat"] for r in first}) - len(totals)},
                            "failed_runs": sum(1 for run in first if not _ok(run))}
    predict_all = stats.select(runs, section="predict")
    predict_runs = [r["probe"] for r in predict_all if _ok(r) and r.get("probe")]
    if predict_all:
        fig["predict"] = {"runs": _runs(predict_all)}
    if predict_runs:
        latencies = [x for p in predict_runs for x in p["single_latencies_s"]]
        throughput = [p["batch_rows"] / w for p in predict_runs for w in p["batch_walls_s"]]
        fig["predict"] |= {"api": predict_runs[0]["api"], "single_p50_ms": stats.percentile(latencies, 50) * 1000,
                           "single_p99_ms": stats.percentile(latencies, 99) * 1000, "single_calls": len(latencies),
                           "batch_rows": predict_runs[0]["batch_rows"], "batch_rows_per_s": stats.median(throughput),
                           "batches": len(throughput)}
    serving_all = stats.select(runs, section="serving")
    serving_runs = [r["probe"] for r in serving_all if _ok(r) and r.get("probe")]
    if serving_all:
        fig["serving"] = {"runs": _runs(serving_all)}
    if serving_runs:
        # Medians over repeats of each run's own percentiles and rates.
        def med(values: list[float | None]) -> float | None:
            values = [v for v in values if v is not None]
            return stats.median(values) if values else None
        fig["serving"] |= {
            "reference": serving_runs[0]["reference"], "workers": serving_runs[0]["workers"],
            "threads": serving_runs[0]["threads"],
            "reference_p50_ms": med([p["reference_p50_ms"] for p in serving_runs]),
            "single_p50_ms": med([p["single_p50_ms"] for p in serving_runs]),
            "single_p99_ms": med([p["single_p99_ms"] for p in serving_runs]),
            "single_errors": sum(p["single_errors"] for p in serving_runs),
            "levels": {str(level["clients"]): {
                key: med([next(x[key] for x in p["levels"] if x["clients"] == level["clients"]) for p in serving_runs])
                for key in ("requests_per_s", "p50_ms", "p99_ms")} | {
                "errors": sum(next(x["errors"] for x in p["levels"] if x["clients"] == level["clients"])
                              for p in serving_runs)} for level in serving_runs[0]["levels"]}}
    fig["failed"] = [{key: run.get(key) for key in ("section", "name", "scale", "repeat", "returncode")}
                     for run in runs if not _ok(run)]
    return fig


def _n(*tallies: dict | None) -> str:
    """'n 3' or 'n 3 / 3', with failures named: '(1 failed)'."""
    tallies = [t for t in tallies if t]
    if not tallies:
        return "n –"
    failed = sum(t["failed"] for t in tallies)
    return "n " + " / ".join(str(t["n"]) for t in tallies) + (f" ({failed} failed)" if failed else "")


def targets(fig: dict[str, Any], scales: list[int]) -> list[dict]:
    out = []
    if "first_run" in fig:
        f = fig["first_run"]
        out.append(stats.check("fresh clone's first make repro", f["total_s"], 90, "<=",
                               f"install + demo source + pipeline, cold package cache; {_n(f['runs'])}", unit="s"))
    if "overhead" in fig:
        o, n, i = fig["overhead"], fig["noop"], fig["incremental"]
        out += [stats.check("DVC overhead: repro --force / stages direct", o["ratio"], 1.10, "<=",
                            _n(o["runs"], o["reference_runs"])),
                stats.check("no-op dvc repro / dvc status", n["ratio"], 1.2, "<=", _n(n["runs"], n["reference_runs"]))]
        ran = i["stages_ran"]
        # Checks that depend on the whole params file (a params check) may run too; the data stages must not.
        out.append(stats.verdict("incremental train change reruns train, evaluate, not gather, featurize",
                                 i["ratio"], bool(ran) and all(
                                     r is not None and {"train", "evaluate"} <= set(r)
                                     and not {"gather", "featurize"} & set(r) for r in ran),
                                 f"value: time / full run; {_n(i['runs'])}; stages ran: "
                                 + "; ".join(", ".join(r or []) for r in ran)))
    for scale in scales:
        gather = fig["stages"].get(f"gather x{scale}")
        if gather:
            out.append(stats.check(f"gather / bare scan (x{scale})", gather["ratio"], 1.5, "<=",
                                   f"{_n(gather['runs'], gather['reference_runs'])}; SQL alone "
                                   f"{stats.fmt(gather.get('query_sql_s'))} s ({_n(gather['query_runs'])}) "
                                   f"of {stats.fmt(gather['wall_s'])} s"))
            out.append(stats.check(f"gather / old SQLAlchemy-rows path (x{scale})", gather["vs_rows_path"], 1.0, "<=",
                                   f"{_n(gather['runs'], gather['rows_path_runs'])}; old path "
                                   f"{stats.fmt(gather['rows_path_s'])} s, same bytes: "
                                   f"{stats.fmt(gather['rows_path_same_bytes'])}"))
    if "scaling" in fig:
        low, high = fig["scaling"]["from"], fig["scaling"]["to"]
        for stage in STAGES:
            growth = fig["scaling"].get(stage)
            if growth:
                out.append(stats.check(f"{stage}: time per row x{high} / x{low}", growth["time_per_row_ratio"], 1.2,
                                       "<=", _n(fig["stages"][f"{stage} x{low}"]["runs"],
                                                fig["stages"][f"{stage} x{high}"]["runs"])))
        gather = fig["scaling"].get("gather")
        if gather:
            a, b = fig["stages"][f"gather x{low}"], fig["stages"][f"gather x{high}"]
            out.append(stats.check(f"gather peak RSS x{high} / x{low}", gather["rss_growth"], 1.2, "<=",
                                   f"{stats.fmt(b['max_rss_bytes'], 'MiB')} MiB vs "
                                   f"{stats.fmt(a['max_rss_bytes'], 'MiB')} MiB; {_n(a['runs'], b['runs'])}"))
    for scale in (s for s in scales if s >= 10):
        featurize = fig["stages"].get(f"featurize x{scale}")
        if featurize:
            rss = featurize["max_rss_bytes"]
            out.append(stats.check(f"featurize peak RSS (x{scale})", None if rss is None else rss / 2**30, 1.0,
                                   "<=", _n(featurize["runs"]), unit="GiB"))
    if "postgres" in fig:
        pg = fig["postgres"]
        out.append(stats.verdict("PostgreSQL gather writes the SQLite snapshot's bytes", pg["wall_s"],
                                 pg["same_bytes_as_sqlite"],
                                 f"value: gather from PostgreSQL (s), {stats.fmt(pg['vs_sqlite_gather'], 'x')} "
                                 f"SQLite's, {stats.fmt(pg['ratio'], 'x')} its bare scan; history of "
                                 f"{stats.fmt(pg['load_rows'])} rows loaded in {stats.fmt(pg['load_s'])} s; "
                                 f"{_n(pg['runs'], pg['reference_runs'])}", unit="s"))
    elif "postgres" in fig.get("skipped", {}):
        out.append(stats.verdict("PostgreSQL gather writes the SQLite snapshot's bytes", None, None,
                                 "skipped: " + fig["skipped"]["postgres"], unit="s"))
    if "sweep" in fig:
        sweep = fig["sweep"]
        restarts = "; ".join(f"#{p['repeat']} {p['restarts_j1']}/{p['restarts_j2']}" for p in sweep["pairs"])
        out.append(stats.check("sweep speed-up -j 2 over -j 1 (clean pairs)", sweep["speedup"], 1.6, ">=",
                               f"{sweep['clean_pairs']} of {len(sweep['pairs'])} pairs clean; worker restarts "
                               f"-j 1/-j 2: {restarts or '–'}; all pairs "
                               f"{stats.fmt(sweep['speedup_all_pairs'], 'x')}; "
                               f"{_n(sweep['runs']['-j 1'], sweep['runs']['-j 2'])}"))
    if fig.get("serving", {}).get("reference"):
        v = fig["serving"]
        out.append(stats.check("serving: single-row HTTP p50, 1 client", v["single_p50_ms"], 5, "<=",
                               f"in-process predict_proba p50 {stats.fmt(v['reference_p50_ms'])} ms; "
                               f"{_n(v['runs'])}", unit="ms"))
        fifty = v["levels"].get("50")
        if fifty:
            out.append(stats.verdict("serving: >= 200 requests/s at 50 clients, 0 errors", fifty["requests_per_s"],
                                     None if fifty["requests_per_s"] is None else
                                     fifty["requests_per_s"] >= 200 and fifty["errors"] == 0,
                                     f"p99 {stats.fmt(fifty['p99_ms'])} ms, {fifty['errors']} errors; "
                                     f"{_n(v['runs'])}", unit="/s"))
    out.append(stats.verdict("every measured run succeeded", float(len(fig["failed"])), not fig["failed"],
                             "value: failed runs; " + ("; ".join(f"{f['section']} {f['name']} x{f['scale']} "
                                                                 f"#{f['repeat']}" for f in fig["failed"]) or "none"),
                             unit=""))
    return out


def report(results: dict[str, Any]) -> str:
    fig = results["figures"]
    parts = [f"Benchmark of {results['commit'][:10]} on {results['machine']['cpu']} "
             f"({results['machine']['cores']} cores), {results['config']['repeats']} repeats, "
             f"medians over n successful runs (failed runs counted, never in a median); "
             f"{results['duration_s'] / 60:.0f} min in all.", ""]
    rows = []
    if "overhead" in fig:
        o, n, i = fig["overhead"], fig["noop"], fig["incremental"]
        rows += [
            ["dvc repro --force vs the four stage commands", stats.fmt(o["dvc_repro_force_s"]),
             stats.fmt(o["stages_direct_s"]), stats.fmt(o["ratio"], "x"), stats.fmt(o.get("cpu_ratio"), "x"),
             _n(o["runs"], o["reference_runs"])],
            ["no-op dvc repro vs dvc status", stats.fmt(n["dvc_repro_s"]), stats.fmt(n["dvc_status_s"]),
             stats.fmt(n["ratio"], "x"), stats.fmt(n.get("cpu_ratio"), "x"), _n(n["runs"], n["reference_runs"])],
            ["train hyperparameter change vs full run", stats.fmt(i["dvc_repro_s"]), stats.fmt(i["full_s"]),
             stats.fmt(i["ratio"], "x"), "–", _n(i["runs"], o["runs"])]]
    if "sweep" in fig:
        w = fig["sweep"]
        rows.append([f"sweep of {w.get('experiments')} queued experiments, -j 2 vs -j 1 (clean pairs: "
                     f"{w['clean_pairs']})", stats.fmt(w["j2_s"]), stats.fmt(w["j1_s"]),
                     f"speed-up {stats.fmt(w['speedup'], 'x')}", "–", _n(w["runs"]["-j 2"], w["runs"]["-j 1"])])
    if "postgres" in fig:
        p = fig["postgres"]
        rows.append(["gather from PostgreSQL vs its bare scan", stats.fmt(p["wall_s"]),
                     stats.fmt(p["reference_wall_s"]), stats.fmt(p["ratio"], "x"), stats.fmt(p.get("cpu_ratio"), "x"),
                     _n(p["runs"], p["reference_runs"])])
    if rows:
        parts.append(stats.table(["comparison", "measured (s)", "reference (s)", "ratio", "CPU ratio", "runs"], rows))
    if fig["stages"]:
        parts += ["", stats.table(
            ["stage", "rows", "wall (s)", "CPU (s)", "peak RSS (MiB)", "rows/s", "reference", "ref. wall (s)",
             "ratio", "CPU ratio", "runs"],
            [[name, stats.fmt(None if e["rows"] is None else int(e["rows"])), stats.fmt(e["wall_s"]),
              stats.fmt(e["cpu_s"]), mib(e["max_rss_bytes"]), stats.fmt(e["rows_per_s"]), e["reference"] or "–",
              stats.fmt(e["reference_wall_s"]), stats.fmt(e["ratio"], "x"), stats.fmt(e.get("cpu_ratio"), "x"),
              _n(e["runs"], e["reference_runs"] if e["reference"] else None)]
             for name, e in fig["stages"].items()])]
        gathers = [(name, e) for name, e in fig["stages"].items() if name.startswith("gather ")]
        parts += ["", stats.table(
            ["gather", "stage (s)", "old SQLAlchemy-rows path (s)", "stage / old", "old path peak RSS (MiB)",
             "same bytes", "SQL alone (s)", "runs stage / old / SQL"],
            [[name, stats.fmt(e["wall_s"]), stats.fmt(e["rows_path_s"]), stats.fmt(e["vs_rows_path"], "x"),
              mib(e["rows_path_max_rss_bytes"]), stats.fmt(e["rows_path_same_bytes"]), stats.fmt(e["query_sql_s"]),
              _n(e["runs"], e["rows_path_runs"], e["query_runs"])] for name, e in gathers])]
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
                      f"{stats.fmt(f['pipeline_s'])} s (medians; {_n(f['runs'])}; {f['failed_runs']} failed steps)"]
    if fig.get("predict", {}).get("api"):
        p = fig["predict"]
        parts += ["", f"predict ({p['api']}): single row p50 {p['single_p50_ms']:.2f} ms, "
                      f"p99 {p['single_p99_ms']:.2f} ms over {p['single_calls']} calls; "
                      f"batch of {p['batch_rows']:,} rows {p['batch_rows_per_s']:,.0f} rows/s (median of "
                      f"{p['batches']} batches); {_n(p['runs'])}"]
    if fig.get("serving", {}).get("reference"):
        v = fig["serving"]
        parts += ["", f"serving over HTTP (SERVING_WORKERS={v['workers']}, {v['threads']} threads; medians of "
                      f"{_n(v['runs'])}), reference {v['reference']}: p50 {stats.fmt(v['reference_p50_ms'])} ms",
                  stats.table(["clients", "requests/s", "p50 ms", "p99 ms", "errors"],
                              [["1", "–", stats.fmt(v["single_p50_ms"]), stats.fmt(v["single_p99_ms"]),
                                str(v["single_errors"])]]
                              + [[clients, stats.fmt(level["requests_per_s"]), stats.fmt(level["p50_ms"]),
                                  stats.fmt(level["p99_ms"]), str(level["errors"])]
                                 for clients, level in v["levels"].items()])]
    for section, why in fig.get("skipped", {}).items():
        parts += ["", f"{section}: skipped: {why}"]
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
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
    commit = sh(["git", "rev-parse", "HEAD"], cwd=config.ROOT).strip()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(work, args.repeats)
    print(f"bench: {commit[:10]}, {args.repeats} repeats, scales {args.scales}, work in {work}", flush=True)
    scaled_as_of: dict[str, str] = {}
    try:
        chosen = set(args.sections)
        if "first_run" in chosen:
            print("first run of a fresh clone", flush=True)
            first_run_section(bench)
        base = make_clone(work / "x1", scaled_source(1))
        if "pipeline" in chosen:
            pipeline_section(bench, base)
        else:
            sh([str(base / ".venv" / "bin" / "dvc"), "repro"], cwd=base, env=clone_env(base))
        for scale in args.scales if "stages" in chosen else []:
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
        if "postgres" in chosen:
            postgres_section(bench, base)
        if "sweep" in chosen:
            sweep_section(bench, base, args.sweep)
        if "predict" in chosen:
            predict_section(bench, base)
        if "serving" in chosen:
            serving_section(bench, base)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    fig = figures(bench.runs, args.scales, bench.skipped)
    results = {
        "schema": stats.RESULTS_SCHEMA,
        "command": "make bench " + " ".join(f"{k}={v}" for k, v in (
            ("BENCH_REPEATS", args.repeats), ("BENCH_SCALES", '"' + " ".join(map(str, args.scales)) + '"'),
            ("BENCH_SWEEP", args.sweep))) + (" BENCH_QUICK=1" if args.quick else "")
            + ("" if args.sections == list(SECTIONS) else f" --sections {','.join(args.sections)}"),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - clock,
        "commit": commit,
        "quick": args.quick,
        "config": {"repeats": args.repeats, "scales": args.scales, "sweep_experiments": args.sweep,
                   "sections": args.sections,
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
