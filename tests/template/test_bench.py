"""The benchmark's pure parts: statistics, targets, tables, the results file's shape.

Timings are measured by `make bench`, never asserted here.
"""
from __future__ import annotations

import json

import pytest

from bench import probes, run, stats
from src.pipeline import config
from src.pipeline.params import load_adapter, load_params


def test_median_odd_even_and_unsorted():
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4, 1, 3, 2]) == 2.5
    assert stats.median([7]) == 7.0
    with pytest.raises(ValueError):
        stats.median([])


def test_percentile_interpolates_like_numpy():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert stats.percentile(values, 50) == pytest.approx(50.5)
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 100.0
    assert stats.percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        stats.percentile(values, 101)


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
    text = stats.target_table([stats.check("dvc overhead", 1.3, 1.10, "<="),
                               stats.verdict("only train, evaluate ran", 0.5, True)])
    assert "MISSED" in text and "<= 1.1×" in text and "| met " in text


def test_stages_ran_reads_dvc_output():
    output = ("Stage 'gather' didn't change, skipping\nRunning stage 'train':\n> python -m src.pipeline.train\n"
              "Running stage 'evaluate':\n> python -m src.pipeline.evaluate\n")
    assert run.stages_ran(output) == ["train", "evaluate"]
    assert run.stages_ran("Data and pipelines are up to date.\n") == []


def test_stage_commands_are_dvc_yamls():
    commands = run.stage_commands(config.ROOT)
    assert list(commands) == list(run.STAGES)
    dvc_yaml = (config.ROOT / "dvc.yaml").read_text(encoding="utf-8")
    for command in commands.values():
        assert f"cmd: {' '.join(command)}\n" in dvc_yaml


def test_package_digest_follows_file_names_and_bytes_not_caches(tmp_path):
    (tmp_path / "__init__.py").write_text("A = 1\n")
    first = run.package_digest(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert run.package_digest(tmp_path) == first
    (tmp_path / "__init__.py").write_text("A = 2\n")
    assert run.package_digest(tmp_path) != first
    (tmp_path / "__init__.py").write_text("A = 1\n")
    (tmp_path / "__init__.py").rename(tmp_path / "other.py")
    assert run.package_digest(tmp_path) != first


def test_bare_scan_reads_the_table_holding_the_adapters_id():
    adapter, _ = load_adapter(load_params())
    table = probes.entity_table(adapter)
    assert adapter.id in table.c
    assert table.name in adapter.snapshot_query


def _runs() -> list[dict]:
    def r(section, name, wall, scale=1, repeat=1, **extra):
        return {"section": section, "name": name, "scale": scale, "repeat": repeat, "wall_s": wall,
                "cpu_s": wall, "max_rss_bytes": 100 * 2**20, "returncode": 0, **extra}

    runs = []
    for repeat, (full, direct) in enumerate([(40.0, 36.0), (44.0, 40.0), (42.0, 38.0)], start=1):
        runs += [r("overhead", "dvc repro --force", full, repeat=repeat),
                 r("overhead", "stages direct", direct, repeat=repeat),
                 r("noop", "dvc repro (no-op)", 1.1, repeat=repeat, stages_ran=[]),
                 r("noop", "dvc status", 1.0, repeat=repeat),
                 r("incremental", "dvc repro (train change)", 21.0, repeat=repeat, stages_ran=["train", "evaluate"]),
                 r("sweep", "queue -j 1", 80.0, repeat=repeat, experiments=8),
                 r("sweep", "queue -j 2", 50.0, repeat=repeat, experiments=8)]
        for scale, rows in ((1, 1000), (10, 10000)):
            runs += [r("stage", "gather", 8.0 * scale, scale, repeat, rows=rows),
                     r("stage", "bare_scan", 2.0 * scale, scale, repeat, rows=rows),
                     r("stage", "query_scan", 5.0 * scale, scale, repeat, probe={"sql_s": 5.0 * scale}),
                     r("stage", "bare_parquet", 1.0, scale, repeat, probe={"snapshot_arrow_bytes": 2**20 * scale}),
                     r("stage", "featurize", 2.0 * scale, scale, repeat, rows=rows)]
    return runs


def test_figures_and_targets_from_raw_runs():
    fig = run.figures(_runs(), [1, 10])
    assert fig["overhead"]["ratio"] == pytest.approx(42.0 / 38.0)
    assert fig["noop"]["ratio"] == pytest.approx(1.1)
    assert fig["incremental"]["ratio"] == pytest.approx(21.0 / 42.0)
    assert fig["sweep"]["speedup"] == pytest.approx(1.6)
    assert fig["stages"]["gather x1"]["ratio"] == pytest.approx(4.0)
    assert fig["stages"]["gather x1"]["rows_per_s"] == pytest.approx(125.0)
    assert fig["scaling"]["gather"]["time_per_row_ratio"] == pytest.approx(1.0)
    verdicts = {t["name"]: t["met"] for t in run.targets(fig, [1, 10])}
    assert verdicts["DVC overhead: repro --force / stages direct"] is False  # 1.105 > 1.10
    assert verdicts["no-op dvc repro / dvc status"] is True
    assert verdicts["incremental train change runs only train, evaluate"] is True
    assert verdicts["gather / bare scan (x1)"] is False
    assert verdicts["sweep speed-up -j 2 over -j 1"] is True
    assert verdicts["gather peak RSS x10 / snapshot in memory"] is False  # 100 MiB > 2 * 10 MiB


def test_results_structure_is_validated_and_json_serialisable():
    runs = _runs()
    fig = run.figures(runs, [1, 10])
    results = {"schema": stats.RESULTS_SCHEMA, "command": "make bench", "started": "t0", "finished": "t1",
               "duration_s": 1.0, "commit": "0" * 40, "quick": False, "config": {"repeats": 3}, "profiles": {},
               "machine": run.machine(), "versions": run.versions(), "runs": runs, "figures": fig,
               "targets": run.targets(fig, [1, 10])}
    assert stats.validate_results(results) == []
    json.dumps(results, allow_nan=False)
    assert results["machine"]["cores"] >= 1 and "scikit-learn" in results["versions"]
    broken = dict(results, runs=[{"name": "x"}], machine={})
    problems = stats.validate_results(broken)
    assert any("machine lacks 'cpu'" in p for p in problems)
    assert any(p.startswith("run 0 lacks") for p in problems)
    assert "MISSED" in run.report(dict(results, table=""))
