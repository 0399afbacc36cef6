"""The predictions table, shared by the evaluate stage and serving, so both write the same bytes.

Binary targets (two classes): [id, probability, label], where `probability`
is that of the second (positive) class and the label is the positive class
when probability >= threshold. More classes: [id, label, probability_<class>
for each class in the recorded order], the label being the most probable
class (ties to the first in that order, as numpy's argmax). A regression
(a float target, adapter.task_of): [id, prediction], the predicted value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from src.pipeline.adapter import REGRESSION, task_of

# A regression's one predicted column.
PREDICTION = "prediction"


def is_binary(classes: list) -> bool:
    return len(classes) == 2


def probability_column(label) -> str:
    return f"probability_{label}"


def model_outputs(model, X: pd.DataFrame, task: str) -> np.ndarray:
    """What a fitted pipeline gives for `X`: predict_proba's (rows x classes), or a regression's values (rows)."""
    return np.asarray(model.predict(X), dtype=np.float64) if task == REGRESSION else model.predict_proba(X)


def predictions_schema(id_column: str, classes: list, label: pa.DataType) -> pa.Schema:
    """`label` is the target's type (the adapter's; the manifest records it as `target_type`)."""
    if task_of(label) == REGRESSION:
        return pa.schema([(id_column, pa.int64()), (PREDICTION, pa.float64())])
    if is_binary(classes):
        return pa.schema([(id_column, pa.int64()), ("probability", pa.float64()), ("label", label)])
    return pa.schema(
        [(id_column, pa.int64()), ("label", label)] + [(probability_column(c), pa.float64()) for c in classes]
    )


def predictions_frame(
    id_column: str, ids, probabilities: np.ndarray, classes: list, threshold: float, task: str | None = None
) -> pd.DataFrame:
    """One row per input: `probabilities` is predict_proba's (rows x classes, classes in the recorded order).

    For a regression (`task`), the predicted values (model_outputs) instead.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    if task == REGRESSION:
        return pd.DataFrame({id_column: ids, PREDICTION: probabilities.reshape(-1)})
    if is_binary(classes):
        positive = probabilities[:, 1]
        labels = np.where(positive >= threshold, classes[1], classes[0])
        return pd.DataFrame({id_column: ids, "probability": positive, "label": labels})
    # Not dtype=object: scikit-learn cannot read integers in an object array as labels.
    labels = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    frame = pd.DataFrame({id_column: ids, "label": labels})
    for index, label in enumerate(classes):
        frame[probability_column(label)] = probabilities[:, index]
    return frame
