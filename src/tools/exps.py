"""`make exps`: the experiments table, narrow enough to read, ranked by validation.

    python -m src.tools.exps [--print-only] [dvc exp show flags...]
    python -m src.tools.exps --best        # the name `make promote` applies

`dvc exp show` has a column for every param, metric and dependency hash: the
recorded category lists and the hashes alone make it hundreds of columns wide.
This builds one `dvc exp show` command, prints it (copy and adapt it: it is
plain DVC) and runs it. The table keeps

- the experiment's name;
- the validation estimate of the first headline metric (mean and spread over
  train's cross-validation folds, metrics/validation.json), which ranks the
  table, best first: the choice is made on the training features only;
- the headline test metrics (eval/metrics.json), the figures to report for the
  chosen experiment, never to choose by: a test set that picks the winner no
  longer estimates the winner's quality;
- the params, upstream ones included, whose values differ between the rows
  shown (`--only-changed`): a swept hyperparameter, `train.model` in a model
  sweep, `gather.as_of`;

and drops every other column: the recorded `categories` and `classes`, the
dependency hashes, the bookkeeping counts, other metrics files and timestamps.
What is headline and which params exist are read from eval/metrics.json and
the params schema, so a port needs no change here.

Experiments that differ in a param upstream of the test features (`gather.as_of`,
`featurize.*`, `seed`: read from dvc.yaml) were trained and tested on other
rows: neither figure compares across them. The table then says so and lists
the groups that do compare; `--best` picks within the workspace's group.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from src.pipeline import config
from src.pipeline.params import Params
from src.tools.headline import scores

# Headline metrics in order of preference, as evaluate writes them (binary:
# roc_auc ... f1; more classes: roc_auc_ovr ... accuracy; a regression: rmse,
# mae, r2, median_absolute_error, ranked by rmse ascending). The first
# MAX_METRICS that eval/metrics.json holds are shown; with none of these names
# there (a changed evaluate), its first top-level numbers. Four fit in 120
# columns beside the experiment's name and one swept hyperparameter
# (`train.hist_gradient_boosting.max_iter` alone takes 40). For a binary target
# f1 goes before accuracy: with few positives, accuracy rewards predicting none.
PREFERRED = (
    "roc_auc",
    "roc_auc_ovr",
    "average_precision",
    "log_loss",
    "f1",
    "f1_macro",
    "accuracy",
    "rmse",
    "mae",
    "r2",
    "median_absolute_error",
)
MAX_METRICS = 4
# Beside the validation mean and spread, two test metrics: the table stays near
# 120 columns with one long swept key (about 126 with
# `train.hist_gradient_boosting.max_iter`, 103 with `train.model`).
MAX_TEST_METRICS = 2
# Losses: lower is better, so they rank ascending.
LOWER_IS_BETTER = ("log_loss", "brier", "rmse", "mae", "median_absolute_error")
# Recorded by `make categories`, not chosen per experiment.
RECORDED = ("categories", "classes")


def headline_metrics(metrics: dict) -> list[str]:
    """Up to MAX_METRICS names of top-level numbers in `metrics`, preferred ones first.

    Nested groups (row counts, unknown and missing categories) are bookkeeping.
    """
    numbers = list(scores(metrics))
    rank = {name: position for position, name in enumerate(PREFERRED)}
    return sorted(numbers, key=lambda name: rank.get(name, len(PREFERRED)))[:MAX_METRICS]


def param_sections() -> list[str]:
    """The top-level params keys whose values are chosen per experiment."""
    return [name for name in Params.model_fields if name not in RECORDED]


def validation_metric(headline: list[str], validation: dict) -> str | None:
    """The first headline metric that metrics/validation.json estimates (has a mean for): the ranking key."""
    return next(
        (name for name in headline if isinstance(validation.get(name), dict) and "mean" in validation[name]), None
    )


def sort_order(metric: str) -> str:
    return "asc" if metric in LOWER_IS_BETTER else "desc"


def show_command(metrics: list[str], sections: list[str], ranked_by: str | None = None) -> list[str]:
    """`dvc exp show` with the validation estimate, the headline test metrics and the params that differ.

    DVC matches every pattern at the start of a column name. `--keep` protects
    a column from `--only-changed` and `--drop` alike; `--drop` removes every
    column that is no param of `sections`: hashes, timestamps, other metrics.
    `ranked_by` (a metric of metrics/validation.json) sorts the table, best
    first; without one (no validation file yet), the first test metric does.
    The pager stays on: a table wider than the terminal
    then scrolls sideways, where `--no-pager` would fold its right-most
    columns, the params, into "…". No `--precision`: DVC applies it to
    `--csv` only; the table always rounds to 5 digits.
    """
    if ranked_by:
        metrics = metrics[:MAX_TEST_METRICS]
    names = "|".join(re.escape(name) for name in metrics)
    validation = f"|{re.escape(ranked_by)}\\.(mean|std)$" if ranked_by else ""
    test_path = config.METRICS.relative_to(config.ROOT).as_posix()
    sort = (
        f"{config.VALIDATION_METRICS.relative_to(config.ROOT).as_posix()}:{ranked_by}.mean"
        if ranked_by
        else f"{test_path}:{metrics[0]}"
    )
    return [
        "dvc",
        "exp",
        "show",
        "--only-changed",
        "--keep",
        f"Experiment$|({names})${validation}",
        "--drop",
        f"(?!({'|'.join(map(re.escape, sections))})(\\.|$))",
        "--sort-by",
        sort,
        "--sort-order",
        sort_order(ranked_by or metrics[0]),
    ]


# --- the ranking, from `dvc exp show --json` ---------------------------------


@dataclass(frozen=True)
class Row:
    """One row of `dvc exp show`: its name, flattened params and metrics files."""

    name: str
    experiment: bool  # False for the baseline commit
    params: dict
    metrics: dict


def _flatten(node: object, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {
            key: value for name, child in node.items() for key, value in _flatten(child, f"{prefix}{name}.").items()
        }
    return {prefix[:-1]: node}


def _row(entry: dict, experiment: bool) -> Row | None:
    data = entry.get("data") or {}
    if entry.get("error") or not data:
        return None
    params = _flatten((data.get("params") or {}).get(config.PARAMS_FILE.name, {}).get("data", {}))
    metrics = {path: content.get("data", {}) for path, content in (data.get("metrics") or {}).items()}
    name = entry.get("name") or str(entry.get("rev", ""))[:7]
    return Row(name, experiment, params, metrics)


def rows(shown: list) -> list[Row]:
    """The baseline commits and their experiments from `dvc exp show --json` (not the workspace)."""
    found = []
    for baseline in shown:
        if baseline.get("rev") == "workspace":
            continue
        if (row := _row(baseline, experiment=False)) is not None:
            found.append(row)
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                if (
                    row := _row({**revision, "name": experiment.get("name") or revision.get("name")}, experiment=True)
                ) is not None:
                    found.append(row)
    return found


def upstream_params(stages: dict, features: str) -> list[str]:
    """The params keys of every stage that `features` (the test features) is built by, directly or not."""
    producers = {}
    for name, stage in stages.items():
        for entry in [*(stage.get("outs") or []), *(stage.get("metrics") or [])]:
            producers[next(iter(entry)) if isinstance(entry, dict) else entry] = name
    keys, todo, seen = [], [producers.get(features)], set()
    while todo:
        name = todo.pop()
        if name is None or name in seen:
            continue
        seen.add(name)
        stage = stages[name]
        keys += [key for entry in stage.get("params") or [] for key in ([entry] if isinstance(entry, str) else entry)]
        todo += [producers.get(dep) for dep in stage.get("deps") or []]
    return sorted(set(keys))


def upstream_of(row: Row, keys: list[str]) -> tuple:
    """The row's values of the upstream params: rows with equal values share training and test sets."""
    return tuple(
        sorted(
            (key, json.dumps(value, sort_keys=True))
            for key, value in row.params.items()
            if any(key == up or key.startswith(f"{up}.") for up in keys)
        )
    )


def rank(found: list[Row], metric: str, keys: list[str]) -> list[list[Row]]:
    """Groups of rows with equal upstream params, each best first by validation `metric`'s mean.

    Reads metrics/validation.json only: nothing computed on the test set can
    move a row. Rows without an estimate (made before train wrote one, or
    failed) are left out. Ties go to the baseline (an experiment that only
    matches it is nothing to promote), then by name: the order is total.
    """
    validation = config.VALIDATION_METRICS.relative_to(config.ROOT).as_posix()
    sign = 1 if sort_order(metric) == "asc" else -1
    groups: dict[tuple, list[Row]] = {}
    for row in found:
        estimate = row.metrics.get(validation, {}).get(metric)
        if isinstance(estimate, dict) and isinstance(estimate.get("mean"), (int, float)):
            groups.setdefault(upstream_of(row, keys), []).append(row)
    for members in groups.values():
        members.sort(key=lambda row: (sign * row.metrics[validation][metric]["mean"], row.experiment, row.name))
    return list(groups.values())


def describe(groups: list[list[Row]], metric: str, keys: list[str]) -> str:
    """What the table is ranked by, and the groups when the upstream params differ."""
    validation = config.VALIDATION_METRICS.relative_to(config.ROOT).as_posix()
    test = config.METRICS.relative_to(config.ROOT).as_posix()
    lines = [
        f"Ranked by {validation}:{metric}.mean, the cross-validation estimate on the training features "
        f"({'lower' if sort_order(metric) == 'asc' else 'higher'} is better). {test} is the test set's "
        "figure: report it for the chosen experiment, do not choose by it."
    ]
    if len(groups) > 1:
        lines.append(
            "These rows differ in params upstream of the features, so their training and test sets "
            "differ: compare only within a group."
        )
        for number, members in enumerate(groups, 1):
            values = ", ".join(f"{key}={value}" for key, value in upstream_of(members[0], _differing(groups, keys)))
            lines.append(f"  group {number} ({values}): {', '.join(row.name for row in members)}")
    return "\n".join(lines)


def _differing(groups: list[list[Row]], keys: list[str]) -> list[str]:
    values: dict[str, set] = {}
    for members in groups:
        for key, value in upstream_of(members[0], keys):
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1]


def best(groups: list[list[Row]], workspace: dict, keys: list[str]) -> Row:
    """The best experiment of the group that shares the workspace's upstream params."""
    here = upstream_of(Row("workspace", False, _flatten(workspace), {}), keys)
    group = next((members for members in groups if upstream_of(members[0], keys) == here), None)
    if not group or not any(row.experiment for row in group):
        raise ValueError(
            "no experiment with a validation estimate shares the workspace's upstream params "
            "(gather, featurize, seed): run a sweep first (docs/sweeps.md)"
        )
    if not group[0].experiment:
        raise ValueError(f"the baseline {group[0].name} ranks first by validation: nothing to promote")
    return group[0]


def _show_json() -> list:
    result = subprocess.run(["dvc", "exp", "show", "--json"], cwd=config.ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"`dvc exp show --json` failed:\n{result.stderr}")
    return json.loads(result.stdout)


def _stages() -> dict:
    return yaml.safe_load((config.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def shell_text(command: list[str]) -> str:
    """`command` quoted for a POSIX shell, one option with its pattern per line."""
    text = shlex.join(command)
    for flag in ("--keep", "--drop", "--sort-by"):
        text = text.replace(f" {flag} ", f" \\\n  {flag} ", 1)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m src.tools.exps",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--print-only", action="store_true", help="print the command, do not run it")
    parser.add_argument(
        "--best",
        action="store_true",
        help="print the name of the best experiment by validation (what `make promote` applies)",
    )
    args, extra = parser.parse_known_args()
    metrics = _read(config.METRICS)
    if not metrics:
        sys.exit(f"{config.METRICS.relative_to(config.ROOT)} not found: run `make repro` first")
    headline = headline_metrics(metrics)
    if not headline:
        sys.exit(f"{config.METRICS.relative_to(config.ROOT)} holds no top-level number to show")
    ranked_by = validation_metric(headline, _read(config.VALIDATION_METRICS))
    if args.best:
        if ranked_by is None:
            sys.exit(f"{config.VALIDATION_METRICS.relative_to(config.ROOT)} holds no estimate: run `make repro`")
        keys = upstream_params(_stages(), config.TEST_FEATURES.relative_to(config.ROOT).as_posix())
        workspace = yaml.safe_load(config.PARAMS_FILE.read_text(encoding="utf-8"))
        try:
            print(best(rank(rows(_show_json()), ranked_by, keys), workspace, keys).name)
        except ValueError as error:
            sys.exit(f"exps: {error}")
        return
    command = show_command(headline, param_sections(), ranked_by) + extra
    print(shell_text(command), flush=True)
    if args.print_only:
        return
    code = subprocess.run(command, cwd=config.ROOT).returncode
    if ranked_by and code == 0:
        keys = upstream_params(_stages(), config.TEST_FEATURES.relative_to(config.ROOT).as_posix())
        # On stderr: the table on stdout stays parseable (`--csv`, `--json`).
        print(describe(rank(rows(_show_json()), ranked_by, keys), ranked_by, keys), file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
