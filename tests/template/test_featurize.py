"""The featurize stage's generic part: the hash split, and featurize() around the adapter's derivation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.pipeline import files
from src.pipeline.featurize import featurize, is_test, target_summary
from tests.template import frames
from tests.template.frames import ADAPTER, ADAPTER_PARAMS


def test_split_is_a_pure_function_of_id_and_seed():
    ids = pd.Series(np.arange(1, 20001))
    mask = is_test(ids, 20, seed=7)
    assert 0.18 < mask.mean() < 0.22
    # the same id lands on the same side whatever else is in the frame, in any order
    shuffled = ids.sample(frac=0.5, random_state=3)
    assert (is_test(shuffled, 20, seed=7) == mask[shuffled.to_numpy() - 1]).all()
    assert (is_test(ids, 20, seed=8) != mask).any()
    # large and negative ids (any int64) hash too, without overflow errors
    extreme = pd.Series([-(2**63), -1, 0, 2**63 - 1])
    assert is_test(extreme, 50, seed=7).dtype == bool


@pytest.mark.parametrize("n_classes", [2, 3])
def test_featurize_splits_the_derived_rows_and_counts_them(n_classes):
    snapshot = frames.snapshot_table(rows=200).to_pandas()
    adapter = frames.with_derive(frames.stub_derive(excluded_every=4, n_classes=n_classes))
    train, test, summary = featurize(snapshot, adapter, ADAPTER_PARAMS, test_percent=30, seed=11)
    derived, excluded = adapter.derive_features(snapshot, ADAPTER_PARAMS)
    # every derived row on exactly one side, as the hash says, in id order
    assert sorted(train[ADAPTER.id].tolist() + test[ADAPTER.id].tolist()) == derived[ADAPTER.id].tolist()
    assert test[ADAPTER.id].tolist() == derived[ADAPTER.id][is_test(derived[ADAPTER.id], 30, 11)].tolist()
    assert train[ADAPTER.id].is_monotonic_increasing and test[ADAPTER.id].is_monotonic_increasing
    assert list(train.index) == list(range(len(train)))  # fresh index: no row positions leak into files
    assert summary["snapshot_rows"] == 200 and summary["model_rows"] == 150
    assert summary["train_rows"] + summary["test_rows"] == 150 and summary["test_rows"] == len(test) > 0
    assert summary["excluded_no_target"] == excluded["excluded_no_target"] == 50
    # what the stage writes: the adapter's declared feature schema
    for rows in (train, test):
        assert files.to_arrow(rows, ADAPTER.features_schema).schema == ADAPTER.features_schema


def test_the_split_does_not_depend_on_other_rows():
    adapter = frames.with_derive(frames.stub_derive(excluded_every=10**9))
    whole = frames.snapshot_table(rows=200).to_pandas()
    _, test_whole, _ = featurize(whole, adapter, ADAPTER_PARAMS, 25, 3)
    half = whole.iloc[::2]
    _, test_half, _ = featurize(half, adapter, ADAPTER_PARAMS, 25, 3)
    assert set(test_half[ADAPTER.id]) == set(test_whole[ADAPTER.id]) & set(half[ADAPTER.id])


def test_target_summary_binary_and_multiclass():
    assert target_summary(pd.Series([0, 1, 1, 0], dtype="int8")) == {"train_positive_rate": 0.5}
    assert target_summary(pd.Series([2, 0, 1, 1])) == {"train_class_rows": {"0": 1, "1": 2, "2": 1}}
    assert target_summary(pd.Series(["b", "a", "b"])) == {"train_class_rows": {"a": 1, "b": 2}}


def test_empty_duplicated_and_targetless_snapshots_are_named():
    snapshot = frames.snapshot_table(rows=40).to_pandas()
    adapter = frames.with_derive(frames.stub_derive())
    with pytest.raises(ValueError, match="empty"):
        featurize(snapshot.iloc[0:0], adapter, ADAPTER_PARAMS, 20, 1)
    duplicated = pd.concat([snapshot, snapshot.iloc[:1]])
    with pytest.raises(ValueError, match=f"duplicate {ADAPTER.id}"):
        featurize(duplicated, adapter, ADAPTER_PARAMS, 20, 1)
    nothing = frames.with_derive(frames.stub_derive(excluded_every=1))
    with pytest.raises(ValueError, match="no snapshot row has a target"):
        featurize(snapshot, nothing, ADAPTER_PARAMS, 20, 1)
