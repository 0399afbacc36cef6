"""Stage `check_recorded`: the recorded classes and category lists against the training features, before train.

DVC deletes a stage's outputs before it runs the stage's command. train owns
the deployed model and its manifest, so a recorded list that does not fit the
training data, caught inside train, would leave nothing to serve: `classes:
[0, 2]` for labels 0 and 1, or `dvc exp run -S 'categories.<name>=[]'`.
check_params cannot catch these: it runs before gather and featurize, when a
fresh port has no lists yet (`make categories` records them from the training
features that those stages write).

So this stage sits between featurize and train. It depends on the training
features and the recorded lists; train depends on its marker, whose text never
changes, so a passing check reruns nothing through it, and a failing one stops
`dvc repro` and `dvc exp run` with the model and manifest as they were. It reads
only the target and the categorical columns. train still runs the same checks
itself (for `dvc repro --single-item train`, which skips this stage).
"""

from __future__ import annotations

import sys

from src.pipeline import config, files
from src.pipeline.dataset import check_categories_seen, check_classes, check_recorded, load_adapter
from src.pipeline.params import load_params

MARKER = config.RECORDED_CHECKED_MARKER
MARKER_TEXT = (
    "The recorded classes and categories in params.yaml passed src/pipeline/check_recorded.py's check\n"
    "against the training features. train depends on this file, so DVC runs the check before it\n"
    "deletes the model. Its text never changes.\n"
)


def check() -> int:
    """Check params.yaml's recorded lists against the training features; return the rows read.

    Raises ParamsError naming the list, what does not fit, and the fix (ValueError: no training rows).
    """
    params = load_params()
    adapter, _ = load_adapter(params)
    check_recorded(params, adapter)
    frame = files.read_frame(config.TRAIN_FEATURES, columns=[adapter.target, *adapter.categorical])
    if frame.empty:
        raise ValueError(f"{config.TRAIN_FEATURES} has no rows: nothing to check the recorded lists against")
    check_classes(frame[adapter.target], params.classes, adapter.task)
    check_categories_seen(frame, params.categories)
    return len(frame)


def main() -> None:
    rows = check()
    with files.atomic_open(MARKER) as handle:
        handle.write(MARKER_TEXT)
    print(f"check_recorded: classes and categories fit the training features ({rows} rows)", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:  # ParamsError is a ValueError
        sys.exit(f"check_recorded: error: {error}\nStopped before train: the model and its manifest are as they were.")
