"""The postgres section: gather from a throwaway PostgreSQL cluster, against its bare scan there."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.measure import BENCH_DIR, Bench, clone_env, sh, stage_commands
from src.pipeline import config, files

# gather from PostgreSQL at 1x: SQLite takes seconds; ten minutes means something is wrong, not slow.
POSTGRES_TIMEOUT_S = 600


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
        bench.measure(
            "postgres",
            "load_history",
            [sys.executable, str(BENCH_DIR / "probes.py"), "load_history"],
            clone,
            1,
            1,
            env=env,
        )
        command = stage_commands(clone)["gather"]
        for repeat in range(1, bench.repeats + 1):
            pair = [("gather", command), ("bare_scan", None)]
            for name, step in pair if repeat % 2 else pair[::-1]:
                if step is None:
                    bench.measure(
                        "postgres",
                        name,
                        [sys.executable, str(BENCH_DIR / "probes.py"), name],
                        clone,
                        1,
                        repeat,
                        env=env,
                        timeout=POSTGRES_TIMEOUT_S,
                    )
                else:
                    bench.measure("postgres", name, step, clone, 1, repeat, env=env, timeout=POSTGRES_TIMEOUT_S)
                    same = snapshot.exists() and files.file_digest(snapshot, "md5") == sqlite_md5
                    bench.runs[-1]["same_bytes_as_sqlite"] = same
        bench.profiles["postgres cluster"] = cluster.report()
    # Back to the SQLite snapshot, whatever the PostgreSQL runs left.
    sh(command, cwd=clone, env=clone_env(clone))
