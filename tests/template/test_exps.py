"""`make exps`: the `dvc exp show` command keeps the headline metrics and the params, and nothing else."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from src.pipeline import config
from src.tools import exps
from src.tools.exps import headline_metrics, param_sections, show_command, validation_metric

BINARY = {
    "roc_auc": 0.79,
    "average_precision": 0.6,
    "log_loss": 0.43,
    "brier": 0.14,
    "accuracy": 0.81,
    "f1": 0.45,
    "rows": {"test": 65471, "positive": 15487},
    "unknown_categories": {"a": 0},
}
MULTICLASS = {
    "roc_auc_ovr": 0.9,
    "log_loss": 0.3,
    "accuracy": 0.8,
    "f1_macro": 0.7,
    "rows": {"test": 10, "class": {"x": 5, "y": 5}},
}


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
        "validation": flatten(json.loads(config.VALIDATION_METRICS.read_text(encoding="utf-8"))),
        "params": flatten(yaml.safe_load(config.PARAMS_FILE.read_text(encoding="utf-8"))),
        "deps": sorted({dep for stage in stages.values() for dep in stage.get("deps", [])}),
    }


def pattern(command: list[str], flag: str) -> re.Pattern:
    # As dvc/commands/experiments/show.py applies --keep and --drop: joined, matched at the start.
    return re.compile("|".join(value for option, value in zip(command, command[1:], strict=False) if option == flag))


def test_the_command_keeps_headline_metrics_and_drops_all_but_chosen_params():
    headline = headline_metrics(json.loads(config.METRICS.read_text(encoding="utf-8")))
    ranked_by = validation_metric(headline, json.loads(config.VALIDATION_METRICS.read_text(encoding="utf-8")))
    assert ranked_by == headline[0]
    command = show_command(headline, param_sections(), ranked_by)
    keep, drop = pattern(command, "--keep"), pattern(command, "--drop")
    columns = dvc_columns()
    every = [column for kind in columns.values() for column in kind]
    # --keep: always shown, --only-changed or not: the validation estimate of the
    # ranking metric, and the first test metrics.
    kept = [column for column in every if keep.match(column)]
    assert kept[0] == "Experiment"
    assert sorted(kept[1:]) == sorted(headline[: exps.MAX_TEST_METRICS] + [f"{ranked_by}.mean", f"{ranked_by}.std"])
    # --drop: every other column but the chosen params (shown where they differ).
    left = [column for column in every if not keep.match(column) and not drop.match(column)]
    chosen = [column for column in columns["params"] if column.split(".")[0] in param_sections()]
    assert left == chosen
    assert {"seed", "gather.as_of", "train.model", "train.cv_folds"} <= set(chosen)
    assert not [column for column in chosen if column.startswith(("categories", "classes"))]
    # Ranked by validation, never by the test set.
    validation_path = config.VALIDATION_METRICS.relative_to(config.ROOT).as_posix()
    assert command[command.index("--sort-by") + 1] == f"{validation_path}:{ranked_by}.mean"
    assert command[command.index("--sort-order") + 1] == "desc"


def test_without_a_validation_estimate_the_first_test_metric_sorts():
    command = show_command(headline_metrics(BINARY), param_sections())
    metrics_path = config.METRICS.relative_to(config.ROOT).as_posix()
    assert command[command.index("--sort-by") + 1] == f"{metrics_path}:roc_auc"
    assert validation_metric(["roc_auc"], {"folds": 5}) is None


# --- ranking -----------------------------------------------------------------


def _entry(name: str, mean: float, test: float, **params) -> dict:
    metrics = {
        "metrics/validation.json": {
            "data": {"roc_auc": {"mean": mean, "std": 0.01}, "log_loss": {"mean": 1 - mean, "std": 0.01}, "folds": 5}
        },
        "eval/metrics.json": {"data": {"roc_auc": test}},
    }
    data = {
        "params": {
            "params.yaml": {"data": {"seed": 1, "gather": {"as_of": "2013-06-30"}, "train": {"model": "m"}, **params}}
        },
        "metrics": metrics,
    }
    return {"name": name, "revs": [{"rev": f"r-{name}", "name": name, "data": data, "error": None}]}


def _shown(*experiments, baseline_mean: float = 0.5) -> list:
    base = _entry("main", baseline_mean, 0.5)["revs"][0]
    return [
        {"rev": "workspace", "data": base["data"], "error": None, "experiments": None},
        {**base, "rev": "c" * 40, "name": "main", "experiments": list(experiments)},
    ]


KEYS = exps.upstream_params(
    yaml.safe_load((config.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"],
    config.TEST_FEATURES.relative_to(config.ROOT).as_posix(),
)


def test_upstream_params_are_those_of_the_stages_the_test_features_come_from():
    assert {"seed", "dataset", "gather", "featurize"} <= set(KEYS)
    assert not [key for key in KEYS if key.startswith(("train", "evaluate"))]


def test_rank_orders_by_the_validation_mean_and_ignores_the_test_metrics():
    shown = _shown(_entry("a", 0.70, 0.99), _entry("b", 0.80, 0.10), _entry("c", 0.75, 0.50))
    (group,) = exps.rank(exps.rows(shown), "roc_auc", KEYS)
    assert [row.name for row in group] == ["b", "c", "a", "main"]
    assert exps.best([group], {"seed": 1, "gather": {"as_of": "2013-06-30"}}, KEYS).name == "b"
    # a loss ranks ascending
    (losses,) = exps.rank(exps.rows(shown), "log_loss", KEYS)
    assert [row.name for row in losses] == ["b", "c", "a", "main"]
    # rows with no estimate (before train wrote one, or failed) are left out
    broken = _entry("d", 0.9, 0.9)
    broken["revs"][0]["data"]["metrics"].pop("metrics/validation.json")
    (group,) = exps.rank(exps.rows(_shown(_entry("a", 0.7, 0.9), broken)), "roc_auc", KEYS)
    assert [row.name for row in group] == ["a", "main"]


def test_experiments_over_upstream_params_are_ranked_apart_and_the_table_says_so():
    other_time = {"gather": {"as_of": "2013-03-31"}, "train": {"model": "x"}}
    shown = _shown(_entry("a", 0.70, 0.9), _entry("old", 0.95, 0.9, **other_time), _entry("b", 0.72, 0.9))
    groups = exps.rank(exps.rows(shown), "roc_auc", KEYS)
    assert [[row.name for row in group] for group in groups] == [["b", "a", "main"], ["old"]]
    text = exps.describe(groups, "roc_auc", KEYS)
    assert "metrics/validation.json:roc_auc.mean" in text and "do not choose by it" in text
    assert "training and test sets differ" in text
    assert 'group 1 (gather.as_of="2013-06-30"): b, a, main' in text
    assert 'group 2 (gather.as_of="2013-03-31"): old' in text
    # promote picks within the workspace's data, never the other as_of's higher figure
    assert exps.best(groups, {"seed": 1, "gather": {"as_of": "2013-06-30"}}, KEYS).name == "b"
    assert "differ" not in exps.describe(groups[:1], "roc_auc", KEYS)


def test_promote_refuses_when_the_baseline_wins_or_nothing_was_run():
    groups = exps.rank(exps.rows(_shown(_entry("a", 0.70, 0.9), baseline_mean=0.9)), "roc_auc", KEYS)
    with pytest.raises(ValueError, match="baseline main ranks first"):
        exps.best(groups, {"seed": 1, "gather": {"as_of": "2013-06-30"}}, KEYS)
    # a tie goes to the baseline: an experiment that only matches it is nothing to promote
    groups = exps.rank(exps.rows(_shown(_entry("a", 0.9, 0.9), baseline_mean=0.9)), "roc_auc", KEYS)
    with pytest.raises(ValueError, match="baseline main ranks first"):
        exps.best(groups, {"seed": 1, "gather": {"as_of": "2013-06-30"}}, KEYS)
    with pytest.raises(ValueError, match="no experiment"):
        exps.best(exps.rank(exps.rows(_shown()), "roc_auc", KEYS), {"seed": 1, "gather": {"as_of": "2013-06-30"}}, KEYS)
