"""`make exps`: the experiments table, narrow enough to read.

    python -m src.tools.exps [--print-only] [dvc exp show flags...]

`dvc exp show` has a column for every param, metric and dependency hash: the
recorded category lists and the hashes alone make it hundreds of columns wide.
This builds one `dvc exp show` command, prints it (copy and adapt it: it is
plain DVC) and runs it. The table keeps

- the experiment's name;
- the headline metrics, first, best experiment on top (sorted by the first);
- the params, upstream ones included, whose values differ between the rows
  shown (`--only-changed`): a swept hyperparameter, `train.model` in a model
  sweep, `gather.as_of`;

and drops every other column: the recorded `categories` and `classes`, the
dependency hashes, the bookkeeping counts, other metrics files and timestamps.
What is headline and which params exist are read from eval/metrics.json and
the params schema, so a port needs no change here.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys

from src.pipeline import config
from src.pipeline.params import Params
from src.tools.headline import scores

# Headline metrics in order of preference, as evaluate writes them (binary:
# roc_auc ... f1; more classes: roc_auc_ovr ... accuracy). The first
# MAX_METRICS that eval/metrics.json holds are shown; with none of these names
# there (a changed evaluate), its first top-level numbers. Four fit in 120
# columns beside the experiment's name and one swept hyperparameter
# (`train.hist_gradient_boosting.max_iter` alone takes 40). For a binary target
# f1 goes before accuracy: with few positives, accuracy rewards predicting none.
PREFERRED = ("roc_auc", "roc_auc_ovr", "average_precision", "log_loss", "f1", "f1_macro", "accuracy")
MAX_METRICS = 4
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


def show_command(metrics: list[str], sections: list[str]) -> list[str]:
    """`dvc exp show` with only the headline metrics and the params that differ.

    DVC matches every pattern at the start of a column name. `--keep` protects
    a column from `--only-changed` and `--drop` alike; `--drop` removes every
    column that is no param of `sections`: hashes, timestamps, other metrics.
    The first metric sorts the table, higher first (evaluate writes a score
    there, not a loss). The pager stays on: a table wider than the terminal
    then scrolls sideways, where `--no-pager` would fold its right-most
    columns, the params, into "…". No `--precision`: DVC applies it to
    `--csv` only; the table always rounds to 5 digits.
    """
    names = "|".join(re.escape(name) for name in metrics)
    metrics_path = config.METRICS.relative_to(config.ROOT).as_posix()
    return [
        "dvc", "exp", "show", "--only-changed",
        "--keep", f"Experiment$|({names})$",
        "--drop", f"(?!({'|'.join(map(re.escape, sections))})(\\.|$))",
        "--sort-by", f"{metrics_path}:{metrics[0]}", "--sort-order", "desc",
    ]


def shell_text(command: list[str]) -> str:
    """`command` quoted for a POSIX shell, one option with its pattern per line."""
    text = shlex.join(command)
    for flag in ("--keep", "--drop", "--sort-by"):
        text = text.replace(f" {flag} ", f" \\\n  {flag} ", 1)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.exps", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-only", action="store_true", help="print the command, do not run it")
    args, extra = parser.parse_known_args()
    try:
        metrics = json.loads(config.METRICS.read_text(encoding="utf-8"))
    except FileNotFoundError:
        sys.exit(f"{config.METRICS.relative_to(config.ROOT)} not found: run `make repro` first")
    headline = headline_metrics(metrics)
    if not headline:
        sys.exit(f"{config.METRICS.relative_to(config.ROOT)} holds no top-level number to show")
    command = show_command(headline, param_sections()) + extra
    print(shell_text(command), flush=True)
    if not args.print_only:
        sys.exit(subprocess.run(command, cwd=config.ROOT).returncode)


if __name__ == "__main__":
    main()
