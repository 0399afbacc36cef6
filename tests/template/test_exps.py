"""`make exps`: the `dvc exp show` command keeps the headline metrics and the params, and nothing else."""
from __future__ import annotations

import json
import re

import yaml

from src.pipeline import config
from src.tools.exps import headline_metrics, param_sections, show_command

BINARY = {"roc_auc": 0.79, "average_precision": 0.6, "log_loss": 0.43, "brier": 0.14, "accuracy": 0.81, "f1": 0.45,
          "rows": {"test": 65471, "positive": 15487}, "unknown_categories": {"a": 0}}
MULTICLASS = {"roc_auc_ovr": 0.9, "log_loss": 0.3, "accuracy": 0.8, "f1_macro": 0.7,
              "rows": {"test": 10, "class": {"x": 5, "y": 5}}}


def test_headline_metrics_are_the_preferred_top_level_numbers():
    assert headline_metrics(BINARY) == ["roc_auc", "average_precision", "log_loss", "f1"]
    assert headline_metrics(MULTICLASS) == ["roc_auc_ovr", "log_loss", "f1_macro", "accuracy"]
    # An evaluate stage with other names: its first numbers; never a count group or a flag.
    assert headline_metrics({"ndcg": 0.5, "rows": {"test": 3}, "ok": True, "mrr": 0.4}) == ["ndcg", "mrr"]


def flatten(node: object, prefix: str = "") -> list[str]:
    """Column names as DVC makes them: nested keys joined by dots."""
    if isinstance(node, dict):
        return [name for key, value in node.items() for name in flatten(value, f"{prefix}{key}.")]
    return [prefix[:-1]]


def dvc_columns() -> dict[str, list[str]]:
    """Every column `dvc exp show --csv` has for this project, as DVC names them, by kind."""
    stages = yaml.safe_load((config.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {
        "table": ["Experiment", "rev", "typ", "Created", "parent", "State", "Executor"],
        "summary": flatten(json.loads(config.FEATURIZE_SUMMARY.read_text(encoding="utf-8"))),
        "metrics": flatten(json.loads(config.METRICS.read_text(encoding="utf-8"))),
        "params": flatten(yaml.safe_load(config.PARAMS_FILE.read_text(encoding="utf-8"))),
        "deps": sorted({dep for stage in stages.values() for dep in stage.get("deps", [])}),
    }


def pattern(command: list[str], flag: str) -> re.Pattern:
    # As dvc/commands/experiments/show.py applies --keep and --drop: joined, matched at the start.
    return re.compile("|".join(value for option, value in zip(command, command[1:], strict=False)
                               if option == flag))


def test_the_command_keeps_headline_metrics_and_drops_all_but_chosen_params():
    headline = headline_metrics(json.loads(config.METRICS.read_text(encoding="utf-8")))
    command = show_command(headline, param_sections())
    keep, drop = pattern(command, "--keep"), pattern(command, "--drop")
    columns = dvc_columns()
    every = [column for kind in columns.values() for column in kind]
    # --keep: always shown, --only-changed or not (in the metrics file's order, which DVC keeps).
    kept = [column for column in every if keep.match(column)]
    assert kept[0] == "Experiment" and sorted(kept[1:]) == sorted(headline)
    # --drop: every other column but the chosen params (shown where they differ).
    left = [column for column in every if not keep.match(column) and not drop.match(column)]
    chosen = [column for column in columns["params"] if column.split(".")[0] in param_sections()]
    assert left == chosen
    assert {"seed", "gather.as_of", "train.model"} <= set(chosen)
    assert not [column for column in chosen if column.startswith(("categories", "classes"))]
    metrics_path = config.METRICS.relative_to(config.ROOT).as_posix()
    assert command[command.index("--sort-by") + 1] == f"{metrics_path}:{headline[0]}"
