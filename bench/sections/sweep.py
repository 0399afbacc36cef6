"""The sweep section: `dvc queue start -j 2` against `-j 1` on the same queued experiments."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.measure import HGB, TIMEOUT_S, Bench, BenchError, clone_env, sh
from src.pipeline import config


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
        for jobs in (1, 2) if repeat % 2 else (2, 1):
            queue_experiments(clone, dvc, env, range(serial + 1, serial + experiments + 1), max_iter)
            serial += experiments
            sweep_once(bench, clone, dvc, env, jobs, repeat, experiments, max_iter)


def queue_experiments(clone: Path, dvc: str, env: dict[str, str], serials: range, max_iter: int) -> None:
    """Queue one experiment per serial number, each a new learning rate: no run-cache hit."""
    for serial in serials:
        sh(
            [
                dvc,
                "exp",
                "run",
                "--queue",
                "-S",
                f"{HGB}.max_iter={max_iter}",
                "-S",
                f"{HGB}.learning_rate={0.05 + serial / 10000:.4f}",
            ],
            cwd=clone,
            env=env,
        )


def sweep_once(
    bench: Bench, clone: Path, dvc: str, env: dict[str, str], jobs: int, repeat: int, experiments: int, max_iter: int
) -> None:
    """Run the queued experiments on `jobs` workers, record the run, and leave no worker and no queued task."""
    wall, restarts, outcome = timed_sweep(clone, dvc, env, jobs, experiments)
    status = sh([dvc, "queue", "status"], cwd=clone, env=env)
    bench.runs.append(
        {
            "section": "sweep",
            "name": f"queue -j {jobs}",
            "scale": 1,
            "repeat": repeat,
            "wall_s": wall,
            "cpu_s": None,
            "max_rss_bytes": None,
            **outcome,
            "experiments": experiments,
            "max_iter": max_iter,
            "worker_restarts": restarts,
            "queue_status": status.strip().splitlines()[-1:],
        }
    )
    print(
        f"  sweep       queue -j {jobs}  {experiments} experiments  #{repeat}  wall {wall:7.2f} s"
        f"  ({restarts} worker restarts){'  FAILED' if outcome['returncode'] else ''}",
        flush=True,
    )
    if outcome["returncode"]:
        sh([dvc, "queue", "remove", "--queued"], cwd=clone, env=env)
    wait_for_idle_workers(clone, dvc, env)
    if outcome["returncode"]:
        sh([dvc, "queue", "remove", "--failed"], cwd=clone, env=env)


def timed_sweep(
    clone: Path, dvc: str, env: dict[str, str], jobs: int, experiments: int
) -> tuple[float, int | None, dict[str, Any]]:
    """Wall time, worker restarts and outcome of `jobs` workers finishing `experiments` queued ones."""
    before = finished_experiments(clone)
    started = time.perf_counter()
    outcome: dict[str, Any] = {"returncode": 0}
    try:
        restarts = start_workers(clone, dvc, sweep_env(env, jobs), jobs, experiments, before, started + TIMEOUT_S)
    except BenchError as error:
        # Counted as a failed run, never left out quietly; the next sweep starts from an empty queue.
        restarts, outcome = None, {"returncode": 1, "error": str(error)[-2000:]}
    return time.perf_counter() - started, restarts, outcome


def sweep_env(env: dict[str, str], jobs: int) -> dict[str, str]:
    """The workers' environment: `jobs` workers share the cores, as docs/sweeps.md tells users to.

    The pipeline takes its thread count from config.THREADS_ENV: each worker
    gets cores // jobs threads; -j 1 then uses every core.
    """
    return {**env, config.THREADS_ENV: str(max(1, (os.cpu_count() or 1) // jobs))}


def start_workers(
    clone: Path, dvc: str, env: dict[str, str], jobs: int, experiments: int, before: int, deadline: float
) -> int:
    """`dvc queue start -j N`, then wait until `experiments` more have finished; return the restarts.

    Workers sometimes exit while tasks are still queued (dvc#10562); a user then
    runs `dvc queue start` again, and so does this, inside the timed region.
    """

    def start() -> None:
        # The workers outlive `dvc queue start` and inherit its output: don't capture it.
        subprocess.run(
            [dvc, "queue", "start", "-j", str(jobs)],
            cwd=clone,
            env=env,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

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
