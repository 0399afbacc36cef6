"""`make repro` ends with the headline metrics: the scores, not the bookkeeping counts."""

from __future__ import annotations

import json
import subprocess
import sys

from src.tools.headline import headline


def test_scores_are_shown_in_logged_order_and_counts_are_left_out():
    metrics = {
        "accuracy": 0.9,
        "f1_macro": 0.85,
        "rows": {"test": 1234, "class": {"a": 1}},
        "unknown_categories": {"x": 3},
    }
    assert headline(metrics) == "accuracy 0.9000, f1_macro 0.8500 (on 1,234 test rows)"


def test_the_command_reads_a_metrics_file_and_names_a_missing_one(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"roc_auc": 0.75, "rows": {"test": 10}}))
    code = "import sys; from pathlib import Path; from src.tools import headline; headline.main(Path(sys.argv[1]))"
    shown = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout == "metrics: roc_auc 0.7500 (on 10 test rows)\n"
    missing = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none.json")], capture_output=True, text=True)
    assert missing.returncode == 1 and "none.json not found: run `dvc repro`" in missing.stderr
