"""The benchmark's pure parts: statistics, targets, tables, the results file's shape.

Timings are measured by `make bench`, never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import figures, measure, report, run, sources, stats, targets
from bench.sections import sweep
from src.pipeline import config
from src.pipeline.dataset import load_adapter
from src.pipeline.params import load_params


def test_median_odd_even_and_unsorted():
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4, 1, 3, 2]) == 2.5
    assert stats.median([7]) == 7.0
    with pytest.raises(ValueError):
        stats.median([])


def test_percentile_interpolates_like_numpy():
    import numpy as np

    values = [float(v) for v in range(1, 101)]  # 1..100
    assert stats.percentile(values, 50) == pytest.approx(50.5)
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 100.0
    assert stats.percentile([5.0], 99) == 5.0
    uneven = [0.3, 9.0, 0.1, 4.0, 2.5, 0.7, 11.0]
    for q in (0, 1, 25, 50, 90, 99, 100):
        assert stats.percentile(uneven, q) == pytest.approx(float(np.percentile(uneven, q)), rel=1e-12)
    with pytest.raises(ValueError):
        stats.percentile(values, 101)
    with pytest.raises(ValueError):
        stats.percentile(values, 99.5)
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_ratio_guards_missing_and_zero():
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, 0.0) is None


def test_check_both_directions_and_unmeasured():
    assert stats.check("a", 1.05, 1.10, "<=")["met"] is True
    assert stats.check("a", 1.2, 1.10, "<=")["met"] is False
    assert stats.check("s", 1.7, 1.6, ">=")["met"] is True
    assert stats.check("s", None, 1.6, ">=")["met"] is None
    with pytest.raises(ValueError):
        stats.check("x", 1.0, 1.0, "<")


def test_table_aligns_columns_and_rejects_ragged_rows():
    text = stats.table(["stage", "wall (s)"], [["gather", "8.1"], ["train", "10.2"]])
    lines = text.splitlines()
    assert lines[0] == "| stage  | wall (s) |"
    assert lines[1] == "|--------|----------|"
    assert lines[3] == "| train  | 10.2     |"
    assert len({len(line) for line in lines}) == 1
    with pytest.raises(ValueError):
        stats.table(["a", "b"], [["only one"]])


def test_fmt_units():
    assert stats.fmt(None) == "–"
    assert stats.fmt(1.234567) == "1.23"
    assert stats.fmt(1.5, "x") == "1.50×"
    assert stats.fmt(float(3 * 2**20), "MiB") == "3"
    assert stats.fmt(336776) == "336,776"
    assert stats.fmt(12345.6) == "12,346"


def test_target_table_shows_verdicts():
    text = stats.target_table(
        [stats.check("dvc overhead", 1.3, 1.10, "<="), stats.verdict("only train, evaluate ran", 0.5, True)]
    )
    assert "MISSED" in text and "<= 1.1×" in text and "| met " in text


def test_target_units():
    text = stats.target_table([stats.check("first make repro", 45.6, 90, "<=", unit="s")])
    assert "45.6 s" in text and "<= 90 s" in text and "×" not in text
    with pytest.raises(ValueError):
        stats.check("x", 1.0, 1.0, "<=", unit="parsecs")


def test_stages_ran_reads_dvc_output():
    output = (
        "Stage 'gather' didn't change, skipping\nRunning stage 'train':\n> python -m src.pipeline.train\n"
        "Running stage 'evaluate':\n> python -m src.pipeline.evaluate\n"
    )
    assert measure.stages_ran(output) == ["train", "evaluate"]
    assert measure.stages_ran("Data and pipelines are up to date.\n") == []


def test_stage_commands_are_dvc_yamls():
    commands = measure.stage_commands(config.ROOT)
    assert list(commands) == list(measure.STAGES)
    every = measure.stage_commands(config.ROOT, every=True)
    assert set(commands) <= set(every)
    assert [name for name in every if name in commands] == list(commands)  # dvc.yaml's order
    dvc_yaml = (config.ROOT / "dvc.yaml").read_text(encoding="utf-8")
    for command in every.values():
        assert f"cmd: {' '.join(command)}\n" in dvc_yaml


def test_package_digest_follows_file_names_and_bytes_not_caches(tmp_path):
    (tmp_path / "__init__.py").write_text("A = 1\n")
    first = sources.package_digest(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert sources.package_digest(tmp_path) == first
    (tmp_path / "__init__.py").write_text("A = 2\n")
    assert sources.package_digest(tmp_path) != first
    (tmp_path / "__init__.py").write_text("A = 1\n")
    (tmp_path / "__init__.py").rename(tmp_path / "other.py")
    assert sources.package_digest(tmp_path) != first


def test_the_entity_table_bare_scan_reads_holds_the_adapters_id():
    adapter, _ = load_adapter(load_params())
    table = adapter.source_tables.tables[adapter.entity_table]
    assert adapter.id in table.c
    assert table.name in adapter.snapshot_query


def _runs() -> list[dict]:
    def r(section, name, wall, scale=1, repeat=1, **extra):
        return {
            "section": section,
            "name": name,
            "scale": scale,
            "repeat": repeat,
            "wall_s": wall,
            "cpu_s": wall,
            "max_rss_bytes": 100 * 2**20,
            "returncode": 0,
            **extra,
        }

    runs = []
    for repeat, (full, direct) in enumerate([(40.0, 36.0), (44.0, 40.0), (42.0, 38.0)], start=1):
        runs += [
            r("overhead", "dvc repro --force", full, repeat=repeat),
            r("overhead", "stages direct", direct, repeat=repeat),
            r("noop", "dvc repro (no-op)", 1.1, repeat=repeat, stages_ran=[]),
            r("noop", "dvc status", 1.0, repeat=repeat),
            r("incremental", "dvc repro (train change)", 21.0, repeat=repeat, stages_ran=["train", "evaluate"]),
            r("sweep", "queue -j 1", 80.0, repeat=repeat, experiments=8, worker_restarts=0),
            r("sweep", "queue -j 2", 50.0, repeat=repeat, experiments=8, worker_restarts=0),
        ]
        for scale, rows in ((1, 1000), (10, 10000)):
            runs += [
                r("stage", "gather", 8.0 * scale, scale, repeat, rows=rows),
                r("stage", "bare_scan", 2.0 * scale, scale, repeat, rows=rows),
                r("stage", "gather_rows", 16.0 * scale, scale, repeat, rows=rows, probe={"same_bytes_as_stage": True}),
                r("stage", "query_scan", 5.0 * scale, scale, repeat, probe={"sql_s": 5.0 * scale}),
                r("stage", "bare_parquet", 1.0, scale, repeat, probe={"snapshot_arrow_bytes": 2**20 * scale}),
                r("stage", "featurize", 2.0 * scale, scale, repeat, rows=rows),
            ]
    return runs


def _by(runs: list[dict], **match) -> dict:
    (found,) = stats.select(runs, **match)
    return found


def test_figures_and_targets_from_raw_runs():
    fig = figures.figures(_runs(), [1, 10])
    assert fig["overhead"]["ratio"] == pytest.approx(42.0 / 38.0)
    assert fig["overhead"]["runs"] == {"n": 3, "failed": 0}
    assert fig["noop"]["ratio"] == pytest.approx(1.1)
    assert fig["incremental"]["ratio"] == pytest.approx(21.0 / 42.0)
    assert fig["sweep"]["speedup"] == pytest.approx(1.6)
    assert fig["stages"]["gather x1"]["ratio"] == pytest.approx(4.0)
    assert fig["stages"]["gather x1"]["vs_rows_path"] == pytest.approx(0.5)
    assert fig["stages"]["gather x10"]["query_sql_s"] == pytest.approx(50.0)
    assert fig["stages"]["gather x10"]["query_runs"] == {"n": 3, "failed": 0}
    assert fig["stages"]["gather x1"]["rows_per_s"] == pytest.approx(125.0)
    assert fig["scaling"]["gather"]["time_per_row_ratio"] == pytest.approx(1.0)
    verdicts = {t["name"]: t["met"] for t in targets.targets(fig, [1, 10])}
    assert verdicts["DVC overhead: repro --force / stages direct"] is False  # 1.105 > 1.10
    assert verdicts["no-op dvc repro / dvc status"] is True
    assert verdicts["incremental train change reruns train, evaluate, not gather, featurize"] is True
    assert verdicts["gather / bare scan (x1)"] is False
    assert verdicts["gather / old SQLAlchemy-rows path (x1)"] is True
    assert verdicts["sweep speed-up -j 2 over -j 1 (clean pairs)"] is True
    assert verdicts["gather peak RSS x10 / x1"] is True  # same peak at both scales
    assert verdicts["featurize peak RSS (x10)"] is True  # 100 MiB
    assert verdicts["every measured run succeeded"] is True


def test_incremental_verdict_allows_a_params_check_not_the_data_stages():
    def verdict(*ran):
        runs = [r for r in _runs() if r["section"] != "incremental"]
        runs += [
            {
                "section": "incremental",
                "name": "dvc repro (train change)",
                "scale": 1,
                "repeat": i,
                "wall_s": 20.0,
                "cpu_s": 20.0,
                "max_rss_bytes": 1,
                "returncode": 0,
                "stages_ran": stages,
            }
            for i, stages in enumerate(ran, 1)
        ]
        found = {t["name"]: t for t in targets.targets(figures.figures(runs, [1, 10]), [1, 10])}
        return found["incremental train change reruns train, evaluate, not gather, featurize"]["met"]

    assert verdict(["check_params", "train", "evaluate"], ["train", "evaluate"]) is True
    assert verdict(["train", "evaluate"], ["featurize", "train", "evaluate"]) is False
    assert verdict(["train"]) is False


def test_failed_runs_are_counted_not_dropped():
    runs = _runs()
    broken = _by(runs, section="stage", name="gather", scale=10, repeat=2)
    broken |= {"returncode": 1, "wall_s": 0.5}  # a crash is fast: in a median it would flatter
    query = _by(runs, section="stage", name="query_scan", scale=10, repeat=3)
    query |= {"returncode": 1}
    fig = figures.figures(runs, [1, 10])
    gather = fig["stages"]["gather x10"]
    assert gather["wall_s"] == pytest.approx(80.0)  # the two that ran
    assert gather["runs"] == {"n": 2, "failed": 1}
    assert gather["query_runs"] == {"n": 2, "failed": 1}
    assert [(f["name"], f["scale"], f["repeat"]) for f in fig["failed"]] == [("gather", 10, 2), ("query_scan", 10, 3)]
    found = {t["name"]: t for t in targets.targets(fig, [1, 10])}
    assert found["every measured run succeeded"]["met"] is False
    assert found["every measured run succeeded"]["value"] == 2
    assert "(1 failed)" in found["gather / bare scan (x10)"]["detail"]
    assert "(1 failed)" in report.report(_results(runs))


def test_sweep_speedup_uses_clean_pairs_only():
    runs = [run_ for run_ in _runs() if run_["section"] != "sweep"]
    # Repeat 1: a restart on -j 1 only (not clean). 2: neither. 3: both sides.
    for repeat, (j1, r1, j2, r2) in enumerate([(100.0, 1, 50.0, 0), (80.0, 0, 50.0, 0), (90.0, 1, 50.0, 2)], 1):
        for jobs, wall, restarts in ((1, j1, r1), (2, j2, r2)):
            runs.append(
                {
                    "section": "sweep",
                    "name": f"queue -j {jobs}",
                    "scale": 1,
                    "repeat": repeat,
                    "wall_s": wall,
                    "cpu_s": None,
                    "max_rss_bytes": None,
                    "returncode": 0,
                    "experiments": 8,
                    "worker_restarts": restarts,
                }
            )
    found = figures.figures(runs, [1])["sweep"]
    assert found["clean_pairs"] == 2
    assert found["speedup"] == pytest.approx(stats.median([80 / 50, 90 / 50]))
    assert found["speedup_all_pairs"] == pytest.approx(90 / 50)
    assert [p["clean"] for p in found["pairs"]] == [False, True, True]


def test_memory_targets_growth_and_featurize_bound():
    runs = _runs()
    for run_ in stats.select(runs, section="stage", name="gather", scale=10):
        run_["max_rss_bytes"] = 130 * 2**20  # 1.3x the peak at x1
    for run_ in stats.select(runs, section="stage", name="featurize", scale=10):
        run_["max_rss_bytes"] = 2 * 2**30
    found = {t["name"]: t for t in targets.targets(figures.figures(runs, [1, 10]), [1, 10])}
    assert found["gather peak RSS x10 / x1"]["met"] is False
    assert found["gather peak RSS x10 / x1"]["value"] == pytest.approx(1.3)
    featurize = found["featurize peak RSS (x10)"]
    assert featurize["met"] is False and featurize["value"] == pytest.approx(2.0) and featurize["unit"] == "GiB"
    assert "2 GiB" in stats.target_table([featurize]) and "<= 1 GiB" in stats.target_table([featurize])


def test_skipped_postgres_is_reported_not_hidden():
    fig = figures.figures(_runs(), [1, 10], skipped={"postgres": "no helper yet"})
    found = {t["name"]: t for t in targets.targets(fig, [1, 10])}
    target = found["PostgreSQL gather writes the SQLite snapshot's bytes"]
    assert target["met"] is None and "no helper yet" in target["detail"]
    assert "postgres: skipped: no helper yet" in report.report(_results(_runs(), skipped={"postgres": "no helper yet"}))


def test_postgres_figures_from_raw_runs():
    runs = _runs()
    for repeat in (1, 2, 3):
        runs += [
            {
                "section": "postgres",
                "name": "gather",
                "scale": 1,
                "repeat": repeat,
                "wall_s": 12.0,
                "cpu_s": 6.0,
                "max_rss_bytes": 1,
                "returncode": 0,
                "same_bytes_as_sqlite": repeat != 2,
            },
            {
                "section": "postgres",
                "name": "bare_scan",
                "scale": 1,
                "repeat": repeat,
                "wall_s": 4.0,
                "cpu_s": 3.0,
                "max_rss_bytes": 1,
                "returncode": 0,
            },
        ]
    fig = figures.figures(runs, [1, 10])
    assert fig["postgres"]["ratio"] == pytest.approx(3.0)
    assert fig["postgres"]["vs_sqlite_gather"] == pytest.approx(1.5)
    assert fig["postgres"]["same_bytes_as_sqlite"] is False  # one run differed: the promise is broken
    found = {t["name"]: t for t in targets.targets(fig, [1, 10])}
    assert found["PostgreSQL gather writes the SQLite snapshot's bytes"]["met"] is False
    # Every run the same bytes, but one crashed: not met either (a crash writes no snapshot).
    for run_ in stats.select(runs, section="postgres", name="gather"):
        run_["same_bytes_as_sqlite"] = True
    assert figures.figures(runs, [1, 10])["postgres"]["same_bytes_as_sqlite"] is True
    _by(runs, section="postgres", name="gather", repeat=3)["returncode"] = 1
    assert figures.figures(runs, [1, 10])["postgres"]["same_bytes_as_sqlite"] is False


def test_sections_option():
    assert run.parse_args(["--sections", "stages,predict"]).sections == ["stages", "predict"]
    assert run.parse_args([]).sections == list(run.SECTIONS)
    with pytest.raises(SystemExit):
        run.parse_args(["--sections", "stagse"])


def _results(runs: list[dict], skipped: dict | None = None) -> dict:
    fig = figures.figures(runs, [1, 10], skipped)
    return {
        "schema": stats.RESULTS_SCHEMA,
        "command": "make bench",
        "started": "t0",
        "finished": "t1",
        "duration_s": 1.0,
        "commit": "0" * 40,
        "quick": False,
        "config": {"repeats": 3},
        "profiles": {},
        "machine": run.machine(),
        "versions": run.versions(),
        "runs": runs,
        "figures": fig,
        "targets": targets.targets(fig, [1, 10]),
    }


def test_results_structure_is_validated_and_json_serialisable():
    results = _results(_runs())
    assert stats.validate_results(results) == []
    json.dumps(results, allow_nan=False)
    assert results["machine"]["cores"] >= 1 and "scikit-learn" in results["versions"]
    broken = dict(results, runs=[{"name": "x"}], machine={})
    problems = stats.validate_results(broken)
    assert any("machine lacks 'cpu'" in p for p in problems)
    assert any(p.startswith("run 0 lacks") for p in problems)
    assert "MISSED" in report.report(dict(results, table=""))


@pytest.mark.slow
def test_a_command_past_its_timeout_is_killed_and_counted_as_failed(tmp_path):
    import os

    bench = measure.Bench(tmp_path, repeats=1)
    marker = tmp_path / "child.pid"
    # The child of the child must go too: the whole process group is killed.
    script = f"sleep 30 & echo $! > {marker}; wait"
    import time

    started = time.monotonic()
    measured = bench.measure(
        "postgres", "gather", ["sh", "-c", script], tmp_path, 1, 1, env=dict(os.environ), timeout=1.0
    )
    # Killing only the direct child would leave the sleep holding the output pipe for 30 s.
    assert time.monotonic() - started < 25, "measure waited for the command's child to finish by itself"
    assert measured["returncode"] is None and "killed after 1 s" in measured["error"]
    assert figures.figures(bench.runs, [1])["failed"] == [
        {"section": "postgres", "name": "gather", "scale": 1, "repeat": 1, "returncode": None}
    ]
    # Gone, or a zombie waiting for its new parent to reap it: not running either way.
    # SIGKILL is sent, not yet handled, when killpg returns: a loaded machine can still
    # show the sleep running ("R") for a moment, so wait a bounded while for it to die.
    stat = Path(f"/proc/{int(marker.read_text())}/stat")
    deadline = time.monotonic() + 10
    while True:
        try:
            text = stat.read_text()
        except FileNotFoundError:
            text = ""
        state = text.rsplit(")", 1)[1].split()[0] if "(sleep)" in text else "gone"
        if state in ("gone", "Z") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert state in ("gone", "Z"), f"the killed command's child is still {state} after 10 s"


def test_sweep_workers_share_the_cores():
    import os

    from src.pipeline import config as pipeline_config

    one, two = sweep.sweep_env({"A": "1"}, 1), sweep.sweep_env({"A": "1"}, 2)
    cores = os.cpu_count() or 1
    name = pipeline_config.THREADS_ENV
    assert one[name] == str(cores) and two[name] == str(max(1, cores // 2)) and two["A"] == "1"


def test_a_scaled_source_needs_a_demo_builder(monkeypatch):
    """A fork's ingested history cannot be scaled: the bench says so instead of failing in the builder."""
    import dataclasses

    from tests.template.frames import ADAPTER, ADAPTER_PARAMS

    adapter = dataclasses.replace(ADAPTER, build_demo_source=None)
    monkeypatch.setattr(sources, "load_adapter", lambda params: (adapter, ADAPTER_PARAMS))
    with pytest.raises(measure.BenchError, match="has no demo builder to scale its source.*BENCH_SCALES=1"):
        sources.scaled_source(10)
