"""The targets: each figure against its limit, or a yes/no fact, in the order the table lists them.

Pure: built from bench/figures.py's figures (tests/template/test_bench.py).
"""

from __future__ import annotations

from typing import Any

from bench import stats
from bench.measure import STAGES
from bench.stats import n_text


def first_run_targets(fig: dict[str, Any]) -> list[dict]:
    f = fig["first_run"]
    return [
        stats.check(
            "fresh clone's first make repro",
            f["total_s"],
            90,
            "<=",
            f"install + demo source + pipeline, cold package cache; {n_text(f['runs'])}",
            unit="s",
        )
    ]


def pipeline_targets(fig: dict[str, Any]) -> list[dict]:
    o, n, i = fig["overhead"], fig["noop"], fig["incremental"]
    ran = i["stages_ran"]
    # Checks that depend on the whole params file (a params check) may run too; the data stages must not.
    return [
        stats.check(
            "DVC overhead: repro --force / stages direct",
            o["ratio"],
            1.10,
            "<=",
            n_text(o["runs"], o["reference_runs"]),
        ),
        stats.check("no-op dvc repro / dvc status", n["ratio"], 1.2, "<=", n_text(n["runs"], n["reference_runs"])),
        stats.verdict(
            "incremental train change reruns train, evaluate, not gather, featurize",
            i["ratio"],
            bool(ran)
            and all(
                r is not None and {"train", "evaluate"} <= set(r) and not {"gather", "featurize"} & set(r) for r in ran
            ),
            f"value: time / full run; {n_text(i['runs'])}; stages ran: " + "; ".join(", ".join(r or []) for r in ran),
        ),
    ]


def gather_targets(gather: dict[str, Any], scale: int) -> list[dict]:
    return [
        stats.check(
            f"gather / bare scan (x{scale})",
            gather["ratio"],
            1.5,
            "<=",
            f"{n_text(gather['runs'], gather['reference_runs'])}; SQL alone "
            f"{stats.fmt(gather.get('query_sql_s'))} s ({n_text(gather['query_runs'])}) "
            f"of {stats.fmt(gather['wall_s'])} s",
        ),
        stats.check(
            f"gather / old SQLAlchemy-rows path (x{scale})",
            gather["vs_rows_path"],
            1.0,
            "<=",
            f"{n_text(gather['runs'], gather['rows_path_runs'])}; old path "
            f"{stats.fmt(gather['rows_path_s'])} s, same bytes: "
            f"{stats.fmt(gather['rows_path_same_bytes'])}",
        ),
    ]


def scaling_targets(fig: dict[str, Any]) -> list[dict]:
    out = []
    low, high = fig["scaling"]["from"], fig["scaling"]["to"]
    for stage in STAGES:
        growth = fig["scaling"].get(stage)
        if growth:
            out.append(
                stats.check(
                    f"{stage}: time per row x{high} / x{low}",
                    growth["time_per_row_ratio"],
                    1.2,
                    "<=",
                    n_text(fig["stages"][f"{stage} x{low}"]["runs"], fig["stages"][f"{stage} x{high}"]["runs"]),
                )
            )
    gather = fig["scaling"].get("gather")
    if gather:
        a, b = fig["stages"][f"gather x{low}"], fig["stages"][f"gather x{high}"]
        out.append(
            stats.check(
                f"gather peak RSS x{high} / x{low}",
                gather["rss_growth"],
                1.2,
                "<=",
                f"{stats.fmt(b['max_rss_bytes'], 'MiB')} MiB vs "
                f"{stats.fmt(a['max_rss_bytes'], 'MiB')} MiB; {n_text(a['runs'], b['runs'])}",
            )
        )
    return out


def featurize_target(featurize: dict[str, Any], scale: int) -> dict:
    rss = featurize["max_rss_bytes"]
    return stats.check(
        f"featurize peak RSS (x{scale})",
        None if rss is None else rss / 2**30,
        1.0,
        "<=",
        n_text(featurize["runs"]),
        unit="GiB",
    )


def postgres_targets(fig: dict[str, Any]) -> list[dict]:
    name = "PostgreSQL gather writes the SQLite snapshot's bytes"
    if "postgres" not in fig:
        if "postgres" in fig.get("skipped", {}):
            return [stats.verdict(name, None, None, "skipped: " + fig["skipped"]["postgres"], unit="s")]
        return []
    pg = fig["postgres"]
    return [
        stats.verdict(
            name,
            pg["wall_s"],
            pg["same_bytes_as_sqlite"],
            f"value: gather from PostgreSQL (s), {stats.fmt(pg['vs_sqlite_gather'], 'x')} "
            f"SQLite's, {stats.fmt(pg['ratio'], 'x')} its bare scan; history of "
            f"{stats.fmt(pg['load_rows'])} rows loaded in {stats.fmt(pg['load_s'])} s; "
            f"{n_text(pg['runs'], pg['reference_runs'])}",
            unit="s",
        )
    ]


def sweep_target(sweep: dict[str, Any]) -> dict:
    restarts = "; ".join(f"#{p['repeat']} {p['restarts_j1']}/{p['restarts_j2']}" for p in sweep["pairs"])
    return stats.check(
        "sweep speed-up -j 2 over -j 1 (clean pairs)",
        sweep["speedup"],
        1.6,
        ">=",
        f"{sweep['clean_pairs']} of {len(sweep['pairs'])} pairs clean; worker restarts "
        f"-j 1/-j 2: {restarts or '–'}; all pairs "
        f"{stats.fmt(sweep['speedup_all_pairs'], 'x')}; "
        f"{n_text(sweep['runs']['-j 1'], sweep['runs']['-j 2'])}",
    )


def serving_targets(v: dict[str, Any]) -> list[dict]:
    out = [
        stats.check(
            "serving: single-row HTTP p50, 1 client",
            v["single_p50_ms"],
            5,
            "<=",
            f"in-process predict_proba p50 {stats.fmt(v['reference_p50_ms'])} ms; {n_text(v['runs'])}",
            unit="ms",
        )
    ]
    fifty = v["levels"].get("50")
    if fifty:
        out.append(
            stats.verdict(
                "serving: >= 200 requests/s at 50 clients, 0 errors",
                fifty["requests_per_s"],
                None if fifty["requests_per_s"] is None else fifty["requests_per_s"] >= 200 and fifty["errors"] == 0,
                f"p99 {stats.fmt(fifty['p99_ms'])} ms, {fifty['errors']} errors; {n_text(v['runs'])}",
                unit="/s",
            )
        )
    return out


def failed_target(fig: dict[str, Any]) -> dict:
    return stats.verdict(
        "every measured run succeeded",
        float(len(fig["failed"])),
        not fig["failed"],
        "value: failed runs; "
        + ("; ".join(f"{f['section']} {f['name']} x{f['scale']} #{f['repeat']}" for f in fig["failed"]) or "none"),
        unit="",
    )


def targets(fig: dict[str, Any], scales: list[int]) -> list[dict]:
    out = first_run_targets(fig) if "first_run" in fig else []
    if "overhead" in fig:
        out += pipeline_targets(fig)
    for scale in scales:
        if fig["stages"].get(f"gather x{scale}"):
            out += gather_targets(fig["stages"][f"gather x{scale}"], scale)
    if "scaling" in fig:
        out += scaling_targets(fig)
    for scale in (s for s in scales if s >= 10):
        if fig["stages"].get(f"featurize x{scale}"):
            out.append(featurize_target(fig["stages"][f"featurize x{scale}"], scale))
    out += postgres_targets(fig)
    if "sweep" in fig:
        out.append(sweep_target(fig["sweep"]))
    if fig.get("serving", {}).get("reference"):
        out += serving_targets(fig["serving"])
    out.append(failed_target(fig))
    return out
