"""The validation estimate (train's cross-validation) and the ranking built on it, on tiny frames.

The ranking test is the point of the estimate: the test set cannot change
which experiment wins, because nothing the ranking reads is computed from it.
"""

from __future__ import annotations

import json
import statistics

import numpy as np
import pandas as pd
import pytest
import yaml

from src.pipeline import config, crossval, evaluate, files, train
from src.pipeline.featurize import is_test
from src.pipeline.model import build_pipeline
from src.tools import exps
from tests.template import frames
from tests.template.frames import ADAPTER
from tests.template.test_model import record_train_outputs, stage_in_tmp


def _xy(rows: int = 120, n_classes: int = 2):
    frame = frames.features(rows, n_classes)
    return frame[list(ADAPTER.features)], frame[ADAPTER.target]


# --- the folds ----------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 3])
def test_folds_are_seeded_shuffled_and_stratified(n_classes):
    X, y = _xy(150, n_classes)
    classes = frames.classes(n_classes)
    split = lambda seed: [held.tolist() for _, held in crossval.splitter(y, classes, 5, seed).split(X, y)]  # noqa: E731
    assert split(7) == split(7)
    assert split(7) != split(8)
    held = split(7)
    assert sorted(row for fold in held for row in fold) == list(range(len(y)))  # each row held out once
    assert held[0] != list(range(len(held[0])))  # shuffled, not the first rows
    for fold in held:
        # every class in every fold, in its training share (within one row)
        share = y.iloc[fold].value_counts()
        expected = y.value_counts() * len(fold) / len(y)
        assert set(share.index) == set(classes) and (abs(share - expected[share.index]) <= 1).all()


def test_too_few_rows_of_a_class_for_the_folds_is_refused_naming_the_param():
    classes = frames.classes(2)
    y = pd.Series([classes[0]] * 20 + [classes[1]] * 3)
    crossval.splitter(y, classes, 3, 0)
    with pytest.raises(ValueError, match=r"train.cv_folds is 4.*fewer training rows than folds"):
        crossval.splitter(y, classes, 4, 0)


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_each_fold_is_scored_with_the_test_metrics_names_and_summarised(n_classes):
    X, y = _xy(150, n_classes)
    params = frames.small_params("logistic_regression", n_classes)
    model = build_pipeline(params.train, params.categories, ADAPTER.numeric, params.seed)
    per_fold = crossval.cross_validate(model, X, y, params.classes, 3, params.seed, params.evaluate.threshold)
    # The names evaluate writes, computed by the same function on each held-out fold.
    test_names = list(
        evaluate.scores(
            y.to_numpy(), np.full((len(y), n_classes), 1 / n_classes), params.classes, params.evaluate.threshold
        )
    )
    assert len(per_fold) == 3 and all(list(fold) == test_names for fold in per_fold)
    assert len({fold[test_names[0]] for fold in per_fold}) > 1  # three different held-out folds
    summary = crossval.summarise(per_fold, len(X))
    for name in test_names:
        values = [fold[name] for fold in per_fold]
        assert summary[name]["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert summary[name]["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    assert summary["folds"] == 3 and summary["rows"] == {"train": len(X)}
    # the unfitted pipeline stays unfitted: the folds fit clones
    assert not hasattr(model, "classes_")


# --- the stage ---------------------------------------------------------------


def _train_bytes(tmp_path, monkeypatch, params, threads: str = "1") -> dict[str, bytes]:
    stage_in_tmp(tmp_path, monkeypatch, params)
    monkeypatch.setenv(config.THREADS_ENV, threads)
    train.main()
    return {path.name: path.read_bytes() for path in (config.MODEL, config.MANIFEST, config.VALIDATION_METRICS)}


@pytest.mark.slow
def test_train_writes_the_estimate_and_the_folds_never_change_the_model(tmp_path, monkeypatch):
    params = frames.small_params("hist_gradient_boosting")
    stage_in_tmp(tmp_path, monkeypatch, params)
    files.write_frame(config.TRAIN_FEATURES, frames.features(160), ADAPTER.features_schema)
    written = {}
    for folds in (2, 4):
        changed = params.model_copy(update={"train": params.train.model_copy(update={"cv_folds": folds})})
        written[folds] = _train_bytes(tmp_path, monkeypatch, changed)
    assert written[2]["model.pkl"] == written[4]["model.pkl"]
    two, four = (json.loads(written[folds]["validation.json"]) for folds in (2, 4))
    assert (two["folds"], four["folds"]) == (2, 4) and two["roc_auc"] != four["roc_auc"]
    assert set(two["roc_auc"]) == {"mean", "std"} and 0 <= two["roc_auc"]["mean"] <= 1
    manifest = json.loads(written[4]["manifest.json"])
    assert manifest["validation"] == {"file": "metrics/validation.json", "folds": 4, "seed": params.seed}
    # the model's own digest does not move with the folds: they are no part of it
    assert manifest["params_sha256"] == json.loads(written[2]["manifest.json"])["params_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hist_gradient_boosting", "random_forest", "mlp"])
def test_the_folds_give_the_same_bytes_on_1_2_and_4_threads(model, tmp_path, monkeypatch):
    params = frames.small_params(model, 3)
    stage_in_tmp(tmp_path, monkeypatch, params)
    files.write_frame(config.TRAIN_FEATURES, frames.features(240, 3), ADAPTER.features_schema)
    written = {threads: _train_bytes(tmp_path, monkeypatch, params, threads) for threads in ("1", "2", "4")}
    assert written["1"] == written["2"] == written["4"]


def test_train_never_reads_the_test_features():
    # Declared: the stage that writes the estimate does not depend on the test
    # set, so DVC gives it no test rows to read (and never reruns it for them).
    stages = yaml.safe_load((config.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    relative = lambda path: path.relative_to(config.ROOT).as_posix()  # noqa: E731
    writer = next(
        name
        for name, stage in stages.items()
        if relative(config.VALIDATION_METRICS) in [next(iter(entry)) for entry in stage.get("metrics", [])]
    )
    assert relative(config.TEST_FEATURES) not in stages[writer]["deps"]


# --- the ranking -------------------------------------------------------------

# Three experiments of different quality on the same rows.
EXPERIMENTS = {
    "lr-weak": ("logistic_regression", {"C": 0.001}),
    "lr": ("logistic_regression", {"C": 1.0}),
    "hgb": ("hist_gradient_boosting", {"max_iter": 20}),
}


def _experiment(base, model: str, change: dict):
    section = getattr(base.train, model).model_copy(update=change)
    return base.model_copy(update={"train": base.train.model_copy(update={"model": model, model: section})})


def _run_all(tmp_path, monkeypatch, base) -> list[dict]:
    """Train and evaluate each experiment with the stages' own code; its row as `dvc exp show --json` has it."""
    experiments = []
    for name, (model, change) in EXPERIMENTS.items():
        params = _experiment(base, model, change)
        stage_in_tmp(tmp_path, monkeypatch, params)
        train.main()
        record_train_outputs(tmp_path)
        evaluate.main()
        metrics = {
            path.relative_to(tmp_path).as_posix(): {"data": json.loads(path.read_text())}
            for path in (config.VALIDATION_METRICS, config.METRICS)
        }
        data = {"params": {"params.yaml": {"data": params.model_dump(mode="json")}}, "metrics": metrics}
        experiments.append(
            {
                "name": name,
                "revs": [{"rev": f"rev-{name}", "name": name, "data": data, "error": None, "experiments": None}],
            }
        )
    return [
        {"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
        {"rev": "0" * 40, "name": "main", "data": {}, "error": None, "experiments": experiments},
    ]


def _order(shown: list, path: str, metric: str) -> list[str]:
    found = {row.name: row.metrics[path] for row in exps.rows(shown)}
    value = lambda name: found[name][metric]["mean"] if isinstance(found[name][metric], dict) else found[name][metric]  # noqa: E731
    return sorted(found, key=lambda name: (-value(name), name))


@pytest.mark.slow
def test_the_test_set_cannot_change_which_experiment_wins(tmp_path, monkeypatch):
    # The project's own upstream params (read before the stages are pointed at tmp_path).
    keys = exps.upstream_params(
        yaml.safe_load((config.ROOT / "dvc.yaml").read_text())["stages"],
        config.TEST_FEATURES.relative_to(config.ROOT).as_posix(),
    )
    assert {"seed", "gather", "featurize"} <= set(keys)
    base = frames.small_params()
    rows = frames.features(300)
    held_out = is_test(rows[ADAPTER.id], 30, base.seed)
    stage_in_tmp(tmp_path, monkeypatch, base)
    files.write_frame(config.TRAIN_FEATURES, rows[~held_out].reset_index(drop=True), ADAPTER.features_schema)
    test = rows[held_out].reset_index(drop=True)
    files.write_frame(config.TEST_FEATURES, test, ADAPTER.features_schema)
    before = _run_all(tmp_path, monkeypatch, base)
    ranking = [[row.name for row in group] for group in exps.rank(exps.rows(before), "roc_auc", keys)]

    # Perturb the test rows: every label flipped, so each test ROC AUC becomes 1 - itself.
    classes = base.classes
    flipped = test.assign(
        **{ADAPTER.target: test[ADAPTER.target].map({classes[0]: classes[1], classes[1]: classes[0]})}
    )
    files.write_frame(config.TEST_FEATURES, flipped, ADAPTER.features_schema)
    after = _run_all(tmp_path, monkeypatch, base)

    test_path, validation_path = "eval/metrics.json", "metrics/validation.json"
    # The test figures moved, enough to reverse their order ...
    assert _order(after, test_path, "roc_auc") == list(reversed(_order(before, test_path, "roc_auc")))
    # ... while every validation file is the same bytes, and so is the ranking.
    for old, new in zip(exps.rows(before), exps.rows(after), strict=True):
        assert old.metrics[validation_path] == new.metrics[validation_path]
    assert [[row.name for row in group] for group in exps.rank(exps.rows(after), "roc_auc", keys)] == ranking
    assert len(ranking) == 1 and len(ranking[0]) == len(EXPERIMENTS)
    assert ranking[0] == _order(before, validation_path, "roc_auc")
