"""The HTTP service, over real HTTP on loopback: uvicorn in a thread, httpx as client."""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from src.serving import serve
from tests.conftest import run
from tests.test_predict import SAVED_PREDICTIONS, TEST_FEATURES, load

MAX_ROWS = 50
MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def service(reproduced):
    """Base URL of a running service on a free loopback port; stopped afterwards."""
    app = serve.create_app(load(reproduced), max_rows=MAX_ROWS, max_bytes=MAX_BYTES)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the OS picks a free port; no race with other tests
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):  # bounded wait for start-up
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def sample(reproduced) -> pd.DataFrame:
    return pd.read_parquet(reproduced / TEST_FEATURES).iloc[::2000].reset_index(drop=True)


def as_json_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts of Python values (floats keep every bit); NaN becomes null."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def test_valid_rows_get_the_evaluate_stage_probabilities(client, sample, reproduced):
    response = client.post("/predict", json={"rows": as_json_rows(sample.drop(columns="delayed"))})
    assert response.status_code == 200, response.text
    body = response.json()
    saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS).set_index("flight_id").loc[sample["flight_id"]]
    got = pd.DataFrame(body["predictions"])
    assert got["flight_id"].tolist() == sample["flight_id"].tolist()
    # Exact bits through JSON: floats are written in their shortest round-trip form.
    assert np.array_equal(got["probability"].to_numpy().view(np.int64), saved["probability"].to_numpy().view(np.int64))
    assert got["label"].tolist() == saved["label"].tolist()
    assert body["ignored_columns"] == [] and body["model_sha256"]


def test_unknown_categories_and_extra_fields_are_reported(client, sample):
    rows = as_json_rows(sample.head(3).drop(columns=["delayed", "flight_id"]))
    rows[0]["dest"], rows[1]["dest"], rows[2]["dest"] = "XXX", None, "YYY"
    rows[1]["tail_number"] = "N12345"
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unknown_categories"]["dest"] == {"unknown": 2, "missing": 1}
    assert body["ignored_columns"] == ["tail_number"]
    assert all(p["flight_id"] is None for p in body["predictions"])


def _bad(sample: pd.DataFrame, edit) -> dict:
    rows = as_json_rows(sample.head(2).drop(columns="delayed"))
    edit(rows[1])
    return {"rows": rows}


@pytest.mark.parametrize("body, status, expected", [
    (lambda s: _bad(s, lambda r: r.pop("temp")), 422, ["temp", "Field required"]),
    (lambda s: _bad(s, lambda r: r.update(month="June")), 422, ["month", "valid number"]),
    (lambda s: _bad(s, lambda r: r.update(carrier=9)), 422, ["carrier", "valid string"]),
    (lambda s: _bad(s, lambda r: r.update(seats="150")), 422, ["seats", "valid number"]),
    (lambda s: _bad(s, lambda r: r.update(sched_dep_hour=24)), 422, ["sched_dep_hour", "less than or equal to 23"]),
    (lambda s: {"rows": []}, 422, ["rows", "at least 1"]),
    (lambda s: {"records": []}, 422, ["rows", "Field required"]),
    (lambda s: {"rows": as_json_rows(s.drop(columns="delayed").head(1)) * (MAX_ROWS + 1)}, 413,
     [f"{MAX_ROWS + 1} rows exceed the limit of {MAX_ROWS}"]),
])
def test_bad_requests_get_a_4xx_that_names_the_problem(client, sample, body, status, expected):
    response = client.post("/predict", json=body(sample))
    assert response.status_code == status, response.text
    for text in expected:
        assert text in response.text


def test_non_json_and_non_finite_numbers_are_422(client, sample):
    headers = {"content-type": "application/json"}
    response = client.post("/predict", content=b'{"rows": [', headers=headers)
    assert response.status_code == 422 and "JSON" in response.text
    row = json.dumps(as_json_rows(sample.head(1).drop(columns="delayed"))[0])
    nan_row = row.replace('"distance":', '"distance": NaN, "was":')  # Python's json would accept NaN
    response = client.post("/predict", content=f'{{"rows": [{nan_row}]}}'.encode(), headers=headers)
    assert response.status_code == 422 and "distance" in response.text


def test_an_oversized_body_is_413_and_the_service_keeps_serving(client, sample):
    padding = "x" * (MAX_BYTES + 1)
    response = client.post("/predict", json={"rows": as_json_rows(sample.head(1)), "padding": padding})
    assert response.status_code == 413 and "Too Large" in response.text

    def chunks():  # no Content-Length: the limit counts the streamed bytes
        yield b'{"rows": [], "padding": "'
        for _ in range(MAX_BYTES // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'
    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/health").json()["status"] == "ok"


def test_info_reports_the_manifest_identity(client, reproduced):
    manifest = json.loads((reproduced / "models/manifest.json").read_text())
    info = client.get("/info").json()
    assert info["model_sha256"] == manifest["model_sha256"]
    assert info["params_sha256"] == manifest["params_sha256"]
    assert info["training_data_sha256"] == manifest["training_data"]["sha256"]
    assert info["versions"] == manifest["versions"]
    assert info["threshold"] == 0.5 and info["contract"]["features"] == manifest["features"]
    assert client.get("/health").json() == {"status": "ok", "model_sha256": manifest["model_sha256"]}


def test_openapi_schema_is_the_manifest_contract(client, reproduced):
    manifest = json.loads((reproduced / "models/manifest.json").read_text())
    row = client.get("/openapi.json").json()["components"]["schemas"]["Row"]
    assert row["required"] == manifest["features"]  # every feature, in the recorded order
    assert row["properties"]["weekday"]["anyOf"][0] == {"type": "number", "minimum": 0.0, "maximum": 6.0}
    assert row["properties"]["carrier"]["anyOf"][0]["type"] == "string"


def test_service_refuses_to_start_on_a_tampered_model(reproduced, tmp_path):
    # The image's layout (src/, models/, dvc.lock, params.yaml) with one byte changed.
    deploy = tmp_path / "app"
    shutil.copytree(reproduced / "src", deploy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (deploy / "models").mkdir()
    for name in ("models/model.pkl", "models/manifest.json", "dvc.lock", "params.yaml"):
        shutil.copy(reproduced / name, deploy / name)
    model = deploy / "models/model.pkl"
    payload = bytearray(model.read_bytes())
    payload[len(payload) // 2] ^= 1
    model.write_bytes(bytes(payload))
    result = run(["python", "-m", "src.serving.serve", "--port", "9"], cwd=deploy, check=False)
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "model.pkl" in result.stderr
    assert "Traceback" not in result.stderr
