"""`make categories`: record the category lists of the current training data.

Writes the sorted distinct values of every categorical feature in the training
features into params.yaml's `categories:` section, keeping the file's comments
and layout (ruamel.yaml round-trip). Run it deliberately, review the diff and
commit it: encoding then uses exactly these lists, and any other value goes to
the explicit unknown bucket.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from ruamel.yaml.comments import CommentedSeq

from src import config, dataset, files
from src.params import ParamsError, update_params


def distinct_categories(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Sorted, non-missing distinct values per categorical column."""
    missing = [column for column in dataset.CATEGORICAL if column not in frame.columns]
    if missing:
        raise ValueError(f"training features lack categorical columns {missing}")
    return {column: sorted(str(value) for value in frame[column].dropna().unique()) for column in dataset.CATEGORICAL}


def record(params_path: Path, categories: dict[str, list[str]]) -> bool:
    """Write `categories` into params_path in place; return True if it changed.

    Block lists, one category per line: each added or removed category is one
    line in a diff, and it is the layout DVC itself writes back.
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

    return update_params(params_path, replace)


def main() -> None:
    frame = files.read_frame(config.TRAIN_FEATURES, columns=list(dataset.CATEGORICAL))
    categories = distinct_categories(frame)
    changed = record(config.PARAMS_FILE, categories)
    sizes = ", ".join(f"{key}: {len(values)}" for key, values in categories.items())
    print(f"categories: {'recorded' if changed else 'unchanged'} in params.yaml ({sizes})")


if __name__ == "__main__":
    try:
        main()
    except (ParamsError, ValueError, FileNotFoundError) as error:
        sys.exit(f"categories: error: {error}")
