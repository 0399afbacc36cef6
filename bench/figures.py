"""Figures from the raw runs: medians and same-run ratios, each with its n and its failed runs.

Pure: no timing happens here (tests/template/test_bench.py feeds it runs).
"""

from __future__ import annotations

from typing import Any

from bench import stats
from bench.measure import REFERENCES, STAGES
from bench.sections.first_run import FIRST_RUN_STEPS


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
    own, ref = (
        stats.select(runs, section=section, name=name, **match),
        stats.select(runs, section=section, name=reference, **match),
    )
    wall, ref_wall = _med(own), _med(ref)
    return {
        "wall_s": wall,
        "reference_wall_s": ref_wall,
        "ratio": stats.ratio(wall, ref_wall),
        "cpu_ratio": stats.ratio(_med(own, "cpu_s"), _med(ref, "cpu_s")),
        "runs": _runs(own),
        "reference_runs": _runs(ref),
    }


def pipeline_figures(runs: list[dict]) -> dict[str, Any]:
    """The pipeline section: DVC overhead, no-op repro vs status, the incremental run vs the full one."""
    if not stats.select(runs, section="overhead"):
        return {}
    o = _comparison(runs, "overhead", "dvc repro --force", "stages direct")
    overhead = {"dvc_repro_force_s": o.pop("wall_s"), "stages_direct_s": o.pop("reference_wall_s"), **o}
    n = _comparison(runs, "noop", "dvc repro (no-op)", "dvc status")
    noop = {
        "dvc_repro_s": n.pop("wall_s"),
        "dvc_status_s": n.pop("reference_wall_s"),
        **n,
        "stages_ran": sorted({s for r in stats.select(runs, section="noop") for s in r.get("stages_ran", [])}),
    }
    incremental_runs = stats.select(runs, section="incremental")
    incremental, full = _med(incremental_runs), overhead["dvc_repro_force_s"]
    return {
        "overhead": overhead,
        "noop": noop,
        "incremental": {
            "dvc_repro_s": incremental,
            "full_s": full,
            "ratio": stats.ratio(incremental, full),
            "runs": _runs(incremental_runs),
            "stages_ran": [r.get("stages_ran") for r in incremental_runs],
        },
    }


def gather_companions(runs: list[dict], scale: int, wall: float | None) -> dict[str, Any]:
    """gather's companions at one scale: the query alone and the old SQLAlchemy-rows read path."""
    query = stats.select(runs, section="stage", name="query_scan", scale=scale)
    old = stats.select(runs, section="stage", name="gather_rows", scale=scale)
    return {
        "query_sql_s": _probe_med(query, "sql_s"),
        "query_runs": _runs(query),
        "rows_path_s": _med(old),
        "rows_path_runs": _runs(old),
        "rows_path_max_rss_bytes": _med(old, "max_rss_bytes"),
        "vs_rows_path": stats.ratio(wall, _med(old)),
        "rows_path_same_bytes": all(r["probe"]["same_bytes_as_stage"] for r in old if _ok(r))
        if any(_ok(r) for r in old)
        else None,
    }


def stage_figures(runs: list[dict], scales: list[int]) -> dict[str, Any]:
    """Each stage at each scale against its reference, keyed "stage xN" (scale by scale, in STAGES order)."""
    found: dict[str, Any] = {}
    for scale in scales:
        for stage in STAGES:
            own = stats.select(runs, section="stage", name=stage, scale=scale)
            if not own:
                continue
            entry = _comparison(runs, "stage", stage, REFERENCES.get(stage), scale=scale)
            wall, rows = entry["wall_s"], _med(own, "rows")
            entry |= {
                "cpu_s": _med(own, "cpu_s"),
                "max_rss_bytes": _med(own, "max_rss_bytes"),
                "rows": rows,
                "rows_per_s": stats.ratio(rows, wall),
                "reference": REFERENCES.get(stage),
            }
            if stage == "gather":
                entry |= gather_companions(runs, scale, wall)
            found[f"{stage} x{scale}"] = entry
    return found


def scaling_figures(stages: dict[str, Any], scales: list[int]) -> dict[str, Any]:
    """How rows, time, time per row and peak RSS grow from the smallest scale to the largest."""
    low, high = min(scales), max(scales)
    scaling: dict[str, Any] = {"from": low, "to": high}
    for stage in STAGES:
        a, b = stages.get(f"{stage} x{low}"), stages.get(f"{stage} x{high}")
        if a and b and a["rows"] and b["rows"] and a["wall_s"] and b["wall_s"]:
            scaling[stage] = {
                "rows_growth": b["rows"] / a["rows"],
                "time_growth": stats.ratio(b["wall_s"], a["wall_s"]),
                "time_per_row_ratio": stats.ratio(b["wall_s"] / b["rows"], a["wall_s"] / a["rows"]),
                "rss_growth": stats.ratio(b["max_rss_bytes"], a["max_rss_bytes"]),
            }
    return scaling


def postgres_figures(runs: list[dict], stages: dict[str, Any]) -> dict[str, Any]:
    """gather from PostgreSQL against its bare scan there and SQLite's gather; whether it wrote SQLite's bytes."""
    pg = _comparison(runs, "postgres", "gather", "bare_scan")
    gathers = [r for r in stats.select(runs, section="postgres", name="gather") if _ok(r)]
    sqlite = stages.get("gather x1", {}).get("wall_s")
    load = stats.select(runs, section="postgres", name="load_history")
    # A gather that failed wrote no snapshot: the promise is not shown, so it is not met.
    failed = len(gathers) < len(stats.select(runs, section="postgres", name="gather"))
    same = False if failed else all(run.get("same_bytes_as_sqlite") for run in gathers) if gathers else None
    return {
        **pg,
        "load_s": _med(load),
        "load_rows": _probe_med(load, "rows"),
        "load_runs": _runs(load),
        "same_bytes_as_sqlite": same,
        "vs_sqlite_gather": stats.ratio(pg["wall_s"], sqlite),
    }


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
            pairs.append(
                {
                    "repeat": repeat,
                    "j1_s": one[0]["wall_s"],
                    "j2_s": two[0]["wall_s"],
                    "restarts_j1": r1,
                    "restarts_j2": r2,
                    "clean": (r1 > 0) == (r2 > 0),
                }
            )
    clean = [pair for pair in pairs if pair["clean"]]

    def speedup(chosen: list[dict]) -> float | None:
        return stats.median([p["j1_s"] / p["j2_s"] for p in chosen]) if chosen else None

    return {
        "j1_s": stats.median([p["j1_s"] for p in clean]) if clean else None,
        "j2_s": stats.median([p["j2_s"] for p in clean]) if clean else None,
        "speedup": speedup(clean),
        "clean_pairs": len(clean),
        "pairs": pairs,
        "speedup_all_pairs": speedup(pairs),
        "runs": {f"-j {jobs}": _runs(stats.select(sweep, name=f"queue -j {jobs}")) for jobs in (1, 2)},
        "experiments": next((r.get("experiments") for r in sweep), None),
    }


def first_run_figures(first: list[dict]) -> dict[str, Any]:
    """Each step's median and the median total over the repeats whose every step succeeded."""
    totals = []  # only repeats whose every step succeeded: a failed step would shorten the sum
    for repeat in sorted({run["repeat"] for run in first}):
        own = stats.select(first, repeat=repeat)
        if len(own) == len(FIRST_RUN_STEPS) and all(_ok(run) for run in own):
            totals.append(sum(run["wall_s"] for run in own))
    return {
        **{f"{step}_s": _med(stats.select(first, name=step)) for step, _ in FIRST_RUN_STEPS},
        "total_s": stats.median(totals) if totals else None,
        "runs": {"n": len(totals), "failed": len({r["repeat"] for r in first}) - len(totals)},
        "failed_runs": sum(1 for run in first if not _ok(run)),
    }


def predict_figures(predict_all: list[dict]) -> dict[str, Any]:
    """Single-row latency percentiles over every call of every run, batch throughput's median."""
    found: dict[str, Any] = {"runs": _runs(predict_all)}
    predict_runs = [r["probe"] for r in predict_all if _ok(r) and r.get("probe")]
    if predict_runs:
        latencies = [x for p in predict_runs for x in p["single_latencies_s"]]
        throughput = [p["batch_rows"] / w for p in predict_runs for w in p["batch_walls_s"]]
        found |= {
            "api": predict_runs[0]["api"],
            "single_p50_ms": stats.percentile(latencies, 50) * 1000,
            "single_p99_ms": stats.percentile(latencies, 99) * 1000,
            "single_calls": len(latencies),
            "batch_rows": predict_runs[0]["batch_rows"],
            "batch_rows_per_s": stats.median(throughput),
            "batches": len(throughput),
        }
    return found


def _med_present(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return stats.median(values) if values else None


def serving_levels(serving_runs: list[dict]) -> dict[str, Any]:
    """Per client count: the medians over runs of requests/s, p50 and p99, and the errors summed."""

    def at(p: dict, clients: int) -> dict:
        return next(x for x in p["levels"] if x["clients"] == clients)

    return {
        str(level["clients"]): {
            key: _med_present([at(p, level["clients"])[key] for p in serving_runs])
            for key in ("requests_per_s", "p50_ms", "p99_ms")
        }
        | {"errors": sum(at(p, level["clients"])["errors"] for p in serving_runs)}
        for level in serving_runs[0]["levels"]
    }


def serving_figures(serving_all: list[dict]) -> dict[str, Any]:
    """Medians over repeats of each serving run's own percentiles and rates."""
    found: dict[str, Any] = {"runs": _runs(serving_all)}
    serving_runs = [r["probe"] for r in serving_all if _ok(r) and r.get("probe")]
    if serving_runs:
        first = serving_runs[0]
        found |= {
            "reference": first["reference"],
            "workers": first["workers"],
            "threads": first["threads"],
            "reference_p50_ms": _med_present([p["reference_p50_ms"] for p in serving_runs]),
            "single_p50_ms": _med_present([p["single_p50_ms"] for p in serving_runs]),
            "single_p99_ms": _med_present([p["single_p99_ms"] for p in serving_runs]),
            "single_errors": sum(p["single_errors"] for p in serving_runs),
            "levels": serving_levels(serving_runs),
        }
    return found


def figures(runs: list[dict], scales: list[int], skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Medians and same-run ratios from the raw runs, each with its n and its failed runs."""
    fig: dict[str, Any] = {"skipped": dict(skipped or {}), **pipeline_figures(runs)}
    fig["stages"] = stage_figures(runs, scales)
    if len(scales) > 1:
        fig["scaling"] = scaling_figures(fig["stages"], scales)
    if stats.select(runs, section="postgres"):
        fig["postgres"] = postgres_figures(runs, fig["stages"])
    if stats.select(runs, section="sweep"):
        fig["sweep"] = sweep_figures(runs)
    for section, summarise in (
        ("first_run", first_run_figures),
        ("predict", predict_figures),
        ("serving", serving_figures),
    ):
        chosen = stats.select(runs, section=section)
        if chosen:
            fig[section] = summarise(chosen)
    fig["failed"] = [
        {key: run.get(key) for key in ("section", "name", "scale", "repeat", "returncode")}
        for run in runs
        if not _ok(run)
    ]
    return fig
