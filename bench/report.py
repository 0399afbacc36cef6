"""The results table: what `make bench` prints and stores as results["table"], built from figures and targets.

Pure: tests/template/test_bench.py builds it from made-up runs.
"""

from __future__ import annotations

from typing import Any

from bench import stats
from bench.measure import mib
from bench.stats import fmt, n_text


def comparison_rows(fig: dict[str, Any]) -> list[list[str]]:
    """The pipeline, sweep and PostgreSQL comparisons, one row each: measured, reference, ratios, n."""
    rows = []
    if "overhead" in fig:
        o, n, i = fig["overhead"], fig["noop"], fig["incremental"]
        rows += [
            [
                "dvc repro --force vs the four stage commands",
                fmt(o["dvc_repro_force_s"]),
                fmt(o["stages_direct_s"]),
                fmt(o["ratio"], "x"),
                fmt(o.get("cpu_ratio"), "x"),
                n_text(o["runs"], o["reference_runs"]),
            ],
            [
                "no-op dvc repro vs dvc status",
                fmt(n["dvc_repro_s"]),
                fmt(n["dvc_status_s"]),
                fmt(n["ratio"], "x"),
                fmt(n.get("cpu_ratio"), "x"),
                n_text(n["runs"], n["reference_runs"]),
            ],
            [
                "train hyperparameter change vs full run",
                fmt(i["dvc_repro_s"]),
                fmt(i["full_s"]),
                fmt(i["ratio"], "x"),
                "–",
                n_text(i["runs"], o["runs"]),
            ],
        ]
    if "sweep" in fig:
        w = fig["sweep"]
        rows.append(
            [
                f"sweep of {w.get('experiments')} queued experiments, -j 2 vs -j 1 (clean pairs: {w['clean_pairs']})",
                fmt(w["j2_s"]),
                fmt(w["j1_s"]),
                f"speed-up {fmt(w['speedup'], 'x')}",
                "–",
                n_text(w["runs"]["-j 2"], w["runs"]["-j 1"]),
            ]
        )
    if "postgres" in fig:
        p = fig["postgres"]
        rows.append(
            [
                "gather from PostgreSQL vs its bare scan",
                fmt(p["wall_s"]),
                fmt(p["reference_wall_s"]),
                fmt(p["ratio"], "x"),
                fmt(p.get("cpu_ratio"), "x"),
                n_text(p["runs"], p["reference_runs"]),
            ]
        )
    return rows


def stage_tables(stages: dict[str, Any]) -> list[str]:
    """Each stage against its reference; then gather against its old read path and the SQL alone."""
    return ["", stage_table(stages), "", gather_table(stages)]


def stage_table(stages: dict[str, Any]) -> str:
    """One row per stage: its time, CPU, memory and rows/s, against its reference."""
    return stats.table(
        [
            "stage",
            "rows",
            "wall (s)",
            "CPU (s)",
            "peak RSS (MiB)",
            "rows/s",
            "reference",
            "ref. wall (s)",
            "ratio",
            "CPU ratio",
            "runs",
        ],
        [
            [
                name,
                fmt(None if e["rows"] is None else int(e["rows"])),
                fmt(e["wall_s"]),
                fmt(e["cpu_s"]),
                mib(e["max_rss_bytes"]),
                fmt(e["rows_per_s"]),
                e["reference"] or "–",
                fmt(e["reference_wall_s"]),
                fmt(e["ratio"], "x"),
                fmt(e.get("cpu_ratio"), "x"),
                n_text(e["runs"], e["reference_runs"] if e["reference"] else None),
            ]
            for name, e in stages.items()
        ],
    )


def gather_table(stages: dict[str, Any]) -> str:
    """One row per "gather ..." stage: the stage against the old SQLAlchemy-rows path and the SQL alone."""
    return stats.table(
        [
            "gather",
            "stage (s)",
            "old SQLAlchemy-rows path (s)",
            "stage / old",
            "old path peak RSS (MiB)",
            "same bytes",
            "SQL alone (s)",
            "runs stage / old / SQL",
        ],
        [
            [
                name,
                fmt(e["wall_s"]),
                fmt(e["rows_path_s"]),
                fmt(e["vs_rows_path"], "x"),
                mib(e["rows_path_max_rss_bytes"]),
                fmt(e["rows_path_same_bytes"]),
                fmt(e["query_sql_s"]),
                n_text(e["runs"], e["rows_path_runs"], e["query_runs"]),
            ]
            for name, e in stages.items()
            if name.startswith("gather ")
        ],
    )


def scaling_table(s: dict[str, Any]) -> list[str]:
    return [
        "",
        stats.table(
            ["stage", f"rows x{s['to']}/x{s['from']}", "time", "time per row", "peak RSS"],
            [
                [
                    stage,
                    fmt(g["rows_growth"], "x"),
                    fmt(g["time_growth"], "x"),
                    fmt(g["time_per_row_ratio"], "x"),
                    fmt(g["rss_growth"], "x"),
                ]
                for stage, g in s.items()
                if isinstance(g, dict)
            ],
        ),
    ]


def first_run_line(f: dict[str, Any]) -> list[str]:
    return [
        "",
        f"fresh clone's first make repro: {fmt(f['total_s'])} s = install "
        f"{fmt(f['install_s'])} s + demo source {fmt(f['source_s'])} s + pipeline "
        f"{fmt(f['pipeline_s'])} s (medians; {n_text(f['runs'])}; {f['failed_runs']} failed steps)",
    ]


def predict_line(p: dict[str, Any]) -> list[str]:
    return [
        "",
        f"predict ({p['api']}): single row p50 {p['single_p50_ms']:.2f} ms, "
        f"p99 {p['single_p99_ms']:.2f} ms over {p['single_calls']} calls; "
        f"batch of {p['batch_rows']:,} rows {p['batch_rows_per_s']:,.0f} rows/s (median of "
        f"{p['batches']} batches); {n_text(p['runs'])}",
    ]


def serving_table(v: dict[str, Any]) -> list[str]:
    return [
        "",
        f"serving over HTTP (SERVING_WORKERS={v['workers']}, {v['threads']} threads; medians of "
        f"{n_text(v['runs'])}), reference {v['reference']}: p50 {fmt(v['reference_p50_ms'])} ms",
        stats.table(
            ["clients", "requests/s", "p50 ms", "p99 ms", "errors"],
            [["1", "–", fmt(v["single_p50_ms"]), fmt(v["single_p99_ms"]), str(v["single_errors"])]]
            + [
                [
                    clients,
                    fmt(level["requests_per_s"]),
                    fmt(level["p50_ms"]),
                    fmt(level["p99_ms"]),
                    str(level["errors"]),
                ]
                for clients, level in v["levels"].items()
            ],
        ),
    ]


def report(results: dict[str, Any]) -> str:
    fig = results["figures"]
    parts = [
        f"Benchmark of {results['commit'][:10]} on {results['machine']['cpu']} "
        f"({results['machine']['cores']} cores), {results['config']['repeats']} repeats, "
        f"medians over n successful runs (failed runs counted, never in a median); "
        f"{results['duration_s'] / 60:.0f} min in all.",
        "",
    ]
    rows = comparison_rows(fig)
    if rows:
        parts.append(stats.table(["comparison", "measured (s)", "reference (s)", "ratio", "CPU ratio", "runs"], rows))
    if fig["stages"]:
        parts += stage_tables(fig["stages"])
    if "scaling" in fig:
        parts += scaling_table(fig["scaling"])
    if "first_run" in fig:
        parts += first_run_line(fig["first_run"])
    if fig.get("predict", {}).get("api"):
        parts += predict_line(fig["predict"])
    if fig.get("serving", {}).get("reference"):
        parts += serving_table(fig["serving"])
    for section, why in fig.get("skipped", {}).items():
        parts += ["", f"{section}: skipped: {why}"]
    parts += ["", stats.target_table(results["targets"])]
    return "\n".join(parts)
