"""Hostile input to serving: bodies the HTTP service must answer with a 4xx, never a 500,
and batch-command inputs it must refuse with a message that names the problem."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from src.pipeline import artifact, config
from src.serving import predict, serve
from src.serving.contract import ContractError
from tests.template import frames
from tests.template.frames import ADAPTER
from tests.template.test_predict import tiny_deployed
from tests.template.test_serve import as_json_rows

SURROGATE = "SURROGATE-PLACEHOLDER"


def _client(tmp_path: Path) -> tuple[TestClient, dict]:
    deployed, rows = tiny_deployed(tmp_path, 2)
    # raise_server_exceptions=False: a crash must show as the 500 a caller would get.
    client = TestClient(serve.create_app(deployed), raise_server_exceptions=False)
    return client, as_json_rows(rows.drop(columns=ADAPTER.target).head(1))[0]


def _with_lone_surrogate(body: dict) -> bytes:
    """`body` as JSON bytes with the escape \\ud800 (valid JSON, not valid Unicode) for the placeholder."""
    text = json.dumps(body)
    assert SURROGATE in text
    return text.replace(SURROGATE, "\\ud800").encode("ascii")


@pytest.mark.slow
@pytest.mark.skipif(not ADAPTER.categorical, reason="the adapter has no categorical features")
def test_a_lone_surrogate_in_a_categorical_value_is_a_422_naming_the_field(tmp_path):
    client, row = _client(tmp_path)
    name = ADAPTER.categorical[0]
    row[name] = SURROGATE
    response = client.post(
        "/predict", content=_with_lone_surrogate({"rows": [row, row]}), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert [problem["loc"] for problem in problems] == [["body", "rows", 0, name], ["body", "rows", 1, name]]
    assert all("\\ud800" in problem["msg"] and "surrogate" in problem["msg"] for problem in problems)


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_a_415_naming_the_expected_type(tmp_path, content_type):
    client, row = _client(tmp_path)
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=json.dumps({"rows": [row]}).encode(), headers=headers)
    assert response.status_code == 415, response.text
    detail = response.json()["detail"]
    assert "application/json" in detail
    assert (content_type or "no Content-Type") in detail


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.api+json"])
def test_json_media_types_are_still_served(tmp_path, content_type):
    client, row = _client(tmp_path)
    response = client.post(
        "/predict", content=json.dumps({"rows": [row]}).encode(), headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text


# --- the version-mismatch refusal names its override --------------------------


@pytest.fixture
def mismatched(tmp_path) -> dict[str, Path]:
    """A tiny model laid out as deployed, consistent with its dvc.lock, but trained on other versions."""
    models = tmp_path / "models"
    models.mkdir()
    model_path, manifest_path, manifest = frames.save(models, "logistic_regression", 2)
    manifest["versions"]["scikit-learn"] = "0.24.2"
    manifest_path.write_text(json.dumps(manifest))
    entries = [
        {
            "path": path.relative_to(tmp_path).as_posix(),
            "hash": "md5",
            "md5": hashlib.md5(path.read_bytes()).hexdigest(),
            "size": path.stat().st_size,
        }
        for path in (model_path, manifest_path)
    ]
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train": {"cmd": "train", "outs": entries}}}))
    params = tmp_path / "params.yaml"
    shutil.copy(config.PARAMS_FILE, params)
    return dict(model_path=model_path, manifest_path=manifest_path, lock_path=lock, params_path=params)


def test_serve_names_the_override_for_a_version_mismatch(mismatched, monkeypatch):
    monkeypatch.setattr(serve, "load_model", functools.partial(predict.load_model, **mismatched))
    with pytest.raises(SystemExit) as exit_:
        serve.main([])
    message = str(exit_.value.code)
    assert "scikit-learn: trained with 0.24.2" in message
    assert "--allow-version-mismatch" in message and "make serve ALLOW_VERSION_MISMATCH=1" in message


def test_predict_names_the_override_for_a_version_mismatch(mismatched, monkeypatch, tmp_path):
    monkeypatch.setattr(predict, "load_model", functools.partial(predict.load_model, **mismatched))
    (tmp_path / "rows.csv").write_text("a\n1\n")
    with pytest.raises(artifact.ArtifactError) as error:
        predict.main(["--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out.csv")])
    message = str(error.value)
    assert "scikit-learn: trained with 0.24.2" in message
    assert "--allow-version-mismatch" in message and "make predict" in message
    assert "ALLOW_VERSION_MISMATCH=1" in message
    # The override loads it (with the loud warning artifact.py logs).
    assert predict.load_model(**mismatched, allow_version_mismatch=True).classes == frames.classes(2)


def test_other_refusals_do_not_suggest_the_version_override(mismatched):
    mismatched["model_path"].write_bytes(mismatched["model_path"].read_bytes() + b"tampered")
    with pytest.raises(artifact.ArtifactError) as error:
        predict.load_model(**mismatched)
    assert not isinstance(error.value, predict.VersionMismatchError)
    assert "refusing to load" in str(error.value)


# --- the batch command names rows as its input numbers them -------------------


@pytest.mark.skipif(not ADAPTER.numeric, reason="the adapter has no numeric features")
def test_csv_errors_name_the_csv_line_and_parquet_errors_the_row(tmp_path, monkeypatch):
    deployed, rows = tiny_deployed(tmp_path / "model", 2)
    monkeypatch.setattr(predict, "load_model", lambda **_: deployed)
    name = ADAPTER.numeric[0]
    rows = rows.astype({name: object})
    rows.loc[[1, 4], name] = "not a number"  # data rows 1 and 4: CSV lines 3 and 6 under the header
    rows.to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(ContractError) as error:
        predict.main(["--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out.csv")])
    assert f"{name}: expected a number or missing, got str 'not a number' at CSV lines 3, 6" in str(error.value)
    # The Python API and HTTP count rows from 0, as a frame and a JSON list index them.
    with pytest.raises(ContractError) as error:
        deployed.predict(rows)
    assert "at rows 1, 4" in str(error.value)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_csv_is_named_as_empty(tmp_path, monkeypatch, content):
    deployed, _ = tiny_deployed(tmp_path / "model", 2)
    monkeypatch.setattr(predict, "load_model", lambda **_: deployed)
    (tmp_path / "rows.csv").write_text(content)
    with pytest.raises(ValueError, match="is empty: no header, no rows"):
        predict.main(["--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out.csv")])


def test_the_command_refuses_an_empty_file_without_a_traceback(tmp_path):
    empty = tmp_path / "rows.csv"
    empty.write_bytes(b"")
    # In process, through what `python -m src.serving.predict` runs: any exception but its one-line
    # exit fails here (test_predict's test_the_command_names_... runs the real process).
    with pytest.raises(SystemExit) as exited:
        predict.cli(["--input", str(empty), "--output", str(tmp_path / "out.csv")])
    assert exited.value.code == f"predict: error: input file {empty} is empty: no header, no rows"
