"""The stages section: each stage run directly against its physical reference (bench/probes.py)."""

from __future__ import annotations

from pathlib import Path

from bench import stats
from bench.measure import COMPANIONS, REFERENCES, STAGES, Bench, clone_env, sh, stage_commands
from src.pipeline import config


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


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def profile_text(path: Path, lines: int = 14) -> str:
    import io
    import pstats

    buffer = io.StringIO()
    pstats.Stats(str(path), stream=buffer).sort_stats("tottime").print_stats(lines)
    text = buffer.getvalue()
    return text[text.index("ncalls") :] if "ncalls" in text else text
