"""The pipeline section: DVC overhead, no-op repro vs status, an incremental train change vs the full run."""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.measure import HGB, Bench, clone_env, sh, stage_commands, stages_ran
from bench.sources import get_param, set_param


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
        run = bench.measure(
            "incremental",
            "dvc repro (train change)",
            [dvc, "repro"],
            clone,
            1,
            repeat,
            change=f"{HGB}.max_iter={original - repeat}",
        )
        bench.runs[-1]["stages_ran"] = stages_ran(run["stdout"])
    set_param(clone, f"{HGB}.max_iter", original)
    sh([dvc, "repro"], cwd=clone, env=clone_env(clone))  # back to HEAD's outputs (from the run-cache)
