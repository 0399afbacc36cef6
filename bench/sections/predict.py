"""The predict and serving sections: bench/probes.py's `predict` and `serve` probes, once per repeat."""

from __future__ import annotations

from pathlib import Path

from bench.measure import Bench


def predict_section(bench: Bench, clone: Path) -> None:
    for repeat in range(1, bench.repeats + 1):
        bench.probe("predict", clone, 1, repeat)
        bench.runs[-1]["section"] = "predict"


def serving_section(bench: Bench, clone: Path) -> None:
    # SERVING_WORKERS and PIPELINE_THREADS as this machine sets them (unset: 1 worker, every core).
    for repeat in range(1, bench.repeats + 1):
        bench.probe("serve", clone, 1, repeat)
        bench.runs[-1]["section"] = "serving"
