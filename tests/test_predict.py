"""Deployment: the batch command and Python API give the evaluate stage's bytes, or refuse.

Every test uses a model built by the real pipeline (the session's `reproduced`
clone); tests that tamper with artifacts work on copies laid out as the
Docker image has them (models/, dvc.lock, params.yaml side by side).
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from src.serving import predict
from src.pipeline import artifact
from src.serving.contract import RANGES, ContractError
from src.datasets.flights import NUMERIC
from tests.conftest import run

TEST_FEATURES = "data/features/test.parquet"
SAVED_PREDICTIONS = "data/predictions/test.parquet"


def deploy_copy(repo: Path, destination: Path) -> dict[str, Path]:
    """Copy what loading needs out of `repo`; return load_model's path arguments."""
    (destination / "models").mkdir(parents=True)
    for name in ("models/model.pkl", "models/manifest.json", "dvc.lock", "params.yaml"):
        shutil.copy(repo / name, destination / name)
    return dict(model_path=destination / "models/model.pkl", manifest_path=destination / "models/manifest.json",
                lock_path=destination / "dvc.lock", params_path=destination / "params.yaml")


def load(repo: Path) -> predict.Deployed:
    return predict.load_model(model_path=repo / "models/model.pkl", manifest_path=repo / "models/manifest.json",
                              lock_path=repo / "dvc.lock", params_path=repo / "params.yaml")


@pytest.fixture(scope="module")
def deployed(reproduced) -> predict.Deployed:
    return load(reproduced)


@pytest.fixture(scope="module")
def test_rows(reproduced) -> pd.DataFrame:
    return pd.read_parquet(reproduced / TEST_FEATURES)


def relock(paths: dict[str, Path], name: str) -> None:
    """Record the current MD5 of models/`name` in the copy's dvc.lock, as a run would."""
    lock = yaml.safe_load(paths["lock_path"].read_text())
    digest = hashlib.md5((paths["lock_path"].parent / "models" / name).read_bytes()).hexdigest()
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == f"models/{name}":
                out["md5"] = digest
    paths["lock_path"].write_text(yaml.safe_dump(lock, sort_keys=False))


def test_batch_command_reproduces_the_evaluate_stage_byte_for_byte(reproduced, tmp_path):
    output = tmp_path / "predictions.parquet"
    result = run(["python", "-m", "src.serving.predict", "--input", TEST_FEATURES, "--output", str(output)], cwd=reproduced)
    assert output.read_bytes() == (reproduced / SAVED_PREDICTIONS).read_bytes()
    assert "ignored columns ['delayed']" in result.stderr  # the target is no input


def test_csv_in_any_column_order_gives_the_same_values(deployed, reproduced, test_rows, tmp_path):
    rows = test_rows.iloc[::20]
    shuffled = rows[list(reversed(rows.columns))].assign(note="free text")
    shuffled.to_csv(tmp_path / "rows.csv", index=False)
    result = deployed.predict(predict.read_rows(tmp_path / "rows.csv", deployed.contract))
    saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS).iloc[::20].reset_index(drop=True)
    # Exact float64 bits, not approximately equal.
    assert np.array_equal(result.predictions["probability"].to_numpy().view(np.int64),
                          saved["probability"].to_numpy().view(np.int64))
    pd.testing.assert_frame_equal(result.predictions, saved, check_exact=True)
    assert result.ignored_columns == ["delayed", "note"]  # as the caller ordered them


def test_unknown_categories_go_to_the_bucket_and_are_counted(deployed, test_rows):
    row = test_rows.head(1).drop(columns=["flight_id", "delayed"])
    odd = pd.concat([row.assign(carrier="ZZ"), row.assign(carrier="QQ"), row.assign(carrier=None)],
                    ignore_index=True)
    result = deployed.predict(odd)
    assert result.unknown_categories["carrier"] == {"unknown": 2, "missing": 1}
    assert result.unknown_categories["origin"] == {"unknown": 0, "missing": 0}
    probability = result.predictions["probability"]
    assert probability[0] == probability[1] == probability[2]  # one bucket
    assert list(result.predictions.columns) == ["probability", "label"]  # no id given, none returned


@pytest.mark.parametrize("change, expected", [
    (lambda f: f.drop(columns=["temp", "dest"]), "lacks required columns ['dest', 'temp']"),
    (lambda f: f.head(0), "no rows"),
    (lambda f: f.assign(month=f["month"].astype(object).where(f.index != 1, "June")),
     "month: expected a number or missing, got str 'June' at row 1"),
    (lambda f: f.assign(carrier=7.0), "carrier: expected text or missing, got float 7.0"),
    (lambda f: f.assign(engines=True), "engines: expected numbers, got booleans"),
    (lambda f: f.assign(sched_dep_hour=f["sched_dep_hour"].where(f.index != 2, 24.0)),
     "sched_dep_hour: 24.0 outside the allowed range from 0 to 23 at row 2"),
    (lambda f: f.assign(distance=np.inf), "distance: infinite values"),
    (lambda f: f.assign(flight_id=f["flight_id"].astype("float64")), "ids must be integers"),
])
def test_bad_input_is_refused_with_the_problem_named(deployed, test_rows, change, expected):
    with pytest.raises(ContractError) as error:
        deployed.predict(change(test_rows.head(5).copy()))
    assert expected in str(error.value)


def test_every_problem_is_listed_at_once(deployed, test_rows):
    frame = test_rows.head(3).assign(weekday=9.0, humid=-1.0)
    with pytest.raises(ContractError) as error:
        deployed.predict(frame)
    assert "weekday" in str(error.value) and "humid" in str(error.value)


def test_ranges_name_only_numeric_features():
    assert set(RANGES) <= set(NUMERIC)


def test_missing_numbers_are_imputed_like_training(deployed, test_rows):
    # The pipeline imputes inside the model: an explicit NaN and the learned
    # median give the same prediction.
    row = test_rows.head(1).drop(columns=["delayed"])
    median = deployed.manifest["learned"]["preprocess/numeric/impute_values"]["temp"]
    both = pd.concat([row.assign(temp=np.nan), row.assign(temp=median)], ignore_index=True)
    probability = deployed.predict(both).predictions["probability"]
    assert probability[0] == probability[1]


class Exploit:
    """Unpickling this creates the marker file: proof that a file was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("also_forged", ["nothing", "manifest", "manifest_and_lock_entry"])
def test_a_swapped_model_is_never_unpickled(reproduced, tmp_path, also_forged):
    paths = deploy_copy(reproduced, tmp_path / "deploy")
    marker = tmp_path / "unpickled"
    paths["model_path"].write_bytes(pickle.dumps(Exploit(marker)))
    if also_forged != "nothing":  # an attacker who also edits the manifest to match
        manifest = json.loads(paths["manifest_path"].read_text())
        manifest["model_sha256"] = hashlib.sha256(paths["model_path"].read_bytes()).hexdigest()
        paths["manifest_path"].write_text(json.dumps(manifest))
    if also_forged == "manifest_and_lock_entry":
        relock(paths, "manifest.json")
    with pytest.raises(artifact.ArtifactError, match="refusing to load") as error:
        predict.load_model(**paths)
    assert "dvc.lock" in str(error.value)
    assert not marker.exists()


def test_version_mismatch_lists_each_package_and_the_override_is_loud(reproduced, tmp_path, caplog):
    paths = deploy_copy(reproduced, tmp_path / "deploy")
    manifest = json.loads(paths["manifest_path"].read_text())
    manifest["versions"].update({"numpy": "1.26.4", "scikit-learn": "1.3.2"})
    paths["manifest_path"].write_text(json.dumps(manifest))
    relock(paths, "manifest.json")  # a consistent run, trained elsewhere
    with pytest.raises(artifact.ArtifactError) as error:
        predict.load_model(**paths)
    message = str(error.value)
    assert "numpy: trained with 1.26.4" in message and "scikit-learn: trained with 1.3.2" in message
    assert "pandas" not in message
    with caplog.at_level(logging.WARNING):
        deployed = predict.load_model(**paths, allow_version_mismatch=True)
    assert "DESPITE VERSION MISMATCH" in caplog.text and "numpy" in caplog.text
    assert deployed.identity()["versions"]["numpy"] == "1.26.4"


def test_params_that_differ_from_the_locked_run_are_refused(reproduced, tmp_path):
    paths = deploy_copy(reproduced, tmp_path / "deploy")
    params = paths["params_path"]
    params.write_text(params.read_text().replace("threshold: 0.5", "threshold: 0.6"))
    with pytest.raises(artifact.ArtifactError, match="evaluate.threshold = 0.6.*'evaluate'.*0.5"):
        predict.load_model(**paths)


def test_batch_command_refuses_bad_input_without_writing(reproduced, test_rows, tmp_path):
    test_rows.head(10).drop(columns=["flight_id"]).to_csv(tmp_path / "no_ids.csv", index=False)
    test_rows.head(10).drop(columns=["visib"]).to_csv(tmp_path / "no_visib.csv", index=False)
    output = tmp_path / "out.parquet"
    for name, expected in [("no_ids.csv", "lacks the id column 'flight_id'"),
                           ("no_visib.csv", "lacks required columns ['visib']"),
                           ("rows.json", "unknown input format '.json'")]:
        result = run(["python", "-m", "src.serving.predict", "--input", str(tmp_path / name), "--output", str(output)],
                     cwd=reproduced, check=False)
        assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
        assert not output.exists()
