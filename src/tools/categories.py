"""`make categories`: record the category lists and the classes of the training data.

Brings the training features up to date first (`dvc repro featurize`: gather
and featurize need no recorded lists, so a fresh port never deadlocks), then
writes the sorted distinct values of every categorical feature into
params.yaml's `categories:` section, and the sorted target labels into
`classes:` (none for a regression: a float target), keeping the file's comments and layout (ruamel.yaml round-trip).
Run it deliberately, review the diff and commit it: encoding then uses exactly
these lists, any other value goes to the explicit unknown bucket, and a label
outside `classes` stops training.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
from ruamel.yaml.comments import CommentedSeq

from src.pipeline import config, files
from src.pipeline.adapter import REGRESSION, Adapter
from src.pipeline.dataset import load_adapter
from src.pipeline.params import ParamsError, load_params, update_params


def distinct_categories(frame: pd.DataFrame, categorical: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """Sorted, non-missing distinct values per categorical column."""
    missing = [column for column in categorical if column not in frame.columns]
    if missing:
        raise ValueError(f"training features lack categorical columns {missing}")
    return {column: sorted(str(value) for value in frame[column].dropna().unique()) for column in categorical}


def distinct_classes(frame: pd.DataFrame, target: str, task: str | None = None) -> list:
    """Sorted distinct target labels, as plain ints or strings; none for a regression (`task`)."""
    if target not in frame.columns:
        raise ValueError(f"training features lack the target column {target!r}")
    if task == REGRESSION:
        return []
    values = frame[target].dropna().unique().tolist()
    if pd.api.types.is_integer_dtype(frame[target].dtype):
        return sorted(int(value) for value in values)
    return sorted(str(value) for value in values)


def record(params_path: Path, categories: dict[str, list[str]], classes: list | None = None) -> bool:
    """Write `categories` (and `classes`) into params_path in place; return True if it changed.

    Block lists, one value per line: each added or removed value is one line
    in a diff, and it is the layout DVC itself writes back.
    """

    def replace(document) -> None:
        section = document.get("categories")
        if section is None:
            raise ParamsError(f"{params_path} has no `categories:` section to record into")
        for key in [key for key in section if key not in categories]:
            del section[key]
        for key, values in categories.items():
            if list(section.get(key) or []) != values:
                section[key] = CommentedSeq(values)
        if classes is not None:
            if "classes" not in document:
                raise ParamsError(f"{params_path} has no `classes:` key to record into")
            if list(document["classes"] or []) != classes:
                document["classes"] = CommentedSeq(classes)

    return update_params(params_path, replace)


def refresh_features(root: Path = config.ROOT) -> None:
    """`dvc repro featurize`: the training features that the lists are read from, up to date."""
    result = subprocess.run(["dvc", "repro", "featurize"], cwd=root)
    if result.returncode != 0:
        raise RuntimeError("`dvc repro featurize` failed (see above): fix that first, then run `make categories`")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.categories", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-repro",
        action="store_true",
        help="read the training features as they are, without `dvc repro featurize` first",
    )
    args = parser.parse_args(argv)
    adapter: Adapter = load_adapter(load_params())[0]
    if not args.no_repro:
        refresh_features()
    frame = files.read_frame(config.TRAIN_FEATURES, columns=[*adapter.categorical, adapter.target])
    categories = distinct_categories(frame, adapter.categorical)
    classes = distinct_classes(frame, adapter.target, adapter.task)
    changed = record(config.PARAMS_FILE, categories, classes)
    sizes = ", ".join(f"{key}: {len(values)}" for key, values in categories.items())
    print(
        f"categories: {'recorded' if changed else 'unchanged'} in params.yaml ({sizes}; "
        + (f"classes: {len(classes)})" if adapter.task != REGRESSION else "no classes: a regression)")
    )


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"categories: error: {error}")
