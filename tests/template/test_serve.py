"""The HTTP service: tiny models through FastAPI's test client, then the pipeline's model over real HTTP."""

from __future__ import annotations

import json
import re
import shutil
import time

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from src.pipeline import config
from src.serving import contract, serve
from src.serving.contract import LARGEST
from tests.conftest import run, running_service
from tests.template import frames
from tests.template.frames import ADAPTER, UNSEEN
from tests.template.test_predict import (
    DEPLOYED_FILES,
    SAVED_PREDICTIONS,
    TEST_FEATURES,
    load,
    sample_rows,
    tiny_deployed,
)

MAX_ROWS = 50
MAX_BYTES = 64 * 1024


def as_json_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts of Python values (floats keep every bit); NaN becomes null."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


# --- tiny models, in process -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_predictions_carry_the_label_and_every_class_probability(tmp_path, n_classes):
    deployed, rows = tiny_deployed(tmp_path, n_classes)
    client = TestClient(serve.create_app(deployed, max_rows=MAX_ROWS, max_bytes=MAX_BYTES))
    response = client.post("/predict", json={"rows": as_json_rows(rows.drop(columns=ADAPTER.target))})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = deployed.predict(rows)
    got = body["predictions"]
    assert [p[ADAPTER.id] for p in got] == rows[ADAPTER.id].tolist()
    assert [p["label"] for p in got] == expected.predictions["label"].tolist()
    classes = [str(c) for c in deployed.classes]
    for prediction, probabilities in zip(got, expected.probabilities.tolist(), strict=True):
        assert list(prediction["probabilities"]) == classes
        assert list(prediction["probabilities"].values()) == probabilities  # exact through JSON
        if n_classes == 2:
            assert prediction["probability"] == probabilities[1]
        else:
            assert "probability" not in prediction
    assert body["ignored_columns"] == [] and body["model_sha256"] == deployed.manifest["model_sha256"]
    info = client.get("/info").json()
    assert info["classes"] == deployed.classes and info["dataset"] == ADAPTER.name
    assert client.get("/openapi.json").json()["info"]["title"] == ADAPTER.title


@pytest.mark.skipif(not ADAPTER.numeric, reason="the adapter has no numeric features")
def test_the_openapi_row_is_the_manifest_contract(tmp_path):
    column = ADAPTER.numeric[0]
    deployed, rows = tiny_deployed(tmp_path, 3, feature_ranges={column: (-5, 5)})
    client = TestClient(serve.create_app(deployed))
    row = client.get("/openapi.json").json()["components"]["schemas"]["Row"]
    assert row["required"] == list(ADAPTER.features)  # every feature, in the recorded order
    assert row["properties"][column]["anyOf"][0] == {"type": "number", "minimum": -5.0, "maximum": 5.0}
    for name in ADAPTER.categorical:
        assert row["properties"][name]["anyOf"][0]["type"] == "string"
    bad = as_json_rows(rows.head(2).drop(columns=ADAPTER.target).assign(**{column: 0.0}))
    bad[1][column] = 6
    response = client.post("/predict", json={"rows": bad})
    assert response.status_code == 422 and column in response.text and "less than or equal to 5" in response.text


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_openapi_example_is_the_manifests_learned_row_and_is_answered(tmp_path, n_classes):
    # Swagger UI fills "Try it out" from the schema: without examples it showed
    # float32's bounds (3.4e38) as values and an `additionalProp1` key.
    deployed, _ = tiny_deployed(tmp_path, n_classes)
    client = TestClient(serve.create_app(deployed))
    schema = client.get("/openapi.json").json()
    row = schema["components"]["schemas"]["Row"]
    [example] = row["examples"]
    assert set(example) == set(ADAPTER.features)  # no id, no extra key
    learned = contract.learned_values(deployed.manifest["learned"], ADAPTER.numeric)
    assert set(learned) == set(ADAPTER.numeric)  # the tiny model imputes every numeric column
    for name in ADAPTER.numeric:
        assert example[name] == learned[name] and row["properties"][name]["examples"] == [learned[name]]
    for name in ADAPTER.categorical:
        assert example[name] == deployed.manifest["categories"][name][0]
    assert "additionalProp1" not in json.dumps(schema)
    assert row["additionalProperties"] is not True and "ignored_columns" in row["additionalProperties"]["description"]
    response = client.post("/predict", json={"rows": [example]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ignored_columns"] == []
    assert all(counts == {"unknown": 0, "missing": 0} for counts in body["unknown_categories"].values())


def test_the_example_keeps_inside_each_range_and_falls_back_without_a_learned_value():
    rows = contract.Contract(
        id="key",
        categorical=("kind",),
        numeric=("low", "high", "free"),
        features=("kind", "low", "high", "free"),
        categories={"kind": ["b", "a"]},
        ranges={"low": (5, 9), "high": (None, 50)},
        typical={"high": 100.0, "low": 7.5},
    )
    assert rows.example() == {"kind": "b", "low": 7.5, "high": 50, "free": 0.0}
    unlearned = contract.Contract(
        id="key", categorical=(), numeric=("low",), features=("low",), categories={}, ranges={"low": (5, None)}
    )
    assert unlearned.example() == {"low": 5.0}


def test_service_workers_are_a_machine_setting(monkeypatch):
    monkeypatch.delenv(serve.WORKERS_ENV, raising=False)
    assert serve.workers() == 1
    monkeypatch.setenv(serve.WORKERS_ENV, " 2 ")
    assert serve.workers() == 2
    for bad in ("0", "-1", "2.5", "many"):
        monkeypatch.setenv(serve.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=rf"{serve.WORKERS_ENV}='{re.escape(bad)}': give a whole"):
            serve.workers()
    # Not a param: no params file or schema names it.
    assert "workers" not in (config.ROOT / "params.yaml").read_text()


def domain_row(adapter=ADAPTER) -> dict:
    """One raw row that meets the adapter's INPUTS by their declared domains alone: each number at
    its domain's low end (else 0), each text at its first allowed value (else "a")."""
    row = {}
    for column in adapter.inputs.schema:
        domain = adapter.inputs.domains.get(column.name)
        low = domain.low if domain is not None else None
        if pa.types.is_string(column.type):
            row[column.name] = domain.values[0] if domain is not None and domain.values else "a"
        elif pa.types.is_integer(column.type):
            row[column.name] = int(np.ceil(low)) if low is not None else 0
        else:
            row[column.name] = float(low) if low is not None else 0.0
    return row


needs_inputs = pytest.mark.skipif(ADAPTER.inputs is None, reason="the adapter declares no INPUTS")


@pytest.mark.slow
@needs_inputs
def test_raw_rows_are_derived_by_the_adapter_and_answered_as_their_features(tmp_path):
    deployed, _ = tiny_deployed(tmp_path, 2)
    client = TestClient(serve.create_app(deployed, max_rows=MAX_ROWS, max_bytes=MAX_BYTES))
    rows = [{**domain_row(), ADAPTER.id: 5, "not_a_column": 1}, domain_row()]
    response = client.post("/predict/raw", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    derived, _ = deployed.raw.check(pd.DataFrame([domain_row(), domain_row()]))
    expected = deployed.predict(derived)
    assert [p[ADAPTER.id] for p in body["predictions"]] == [5, None]
    assert [p["probabilities"] for p in body["predictions"]] == [
        dict(zip(map(str, deployed.classes), row, strict=True)) for row in expected.probabilities.tolist()
    ]
    assert body["ignored_columns"] == ["not_a_column"]
    # Both contracts are declared: in /info and in the OpenAPI schema.
    info = client.get("/info").json()
    assert info["raw_contract"]["endpoint"] == "/predict/raw"
    assert info["raw_contract"]["columns"] == {c.name: str(c.type) for c in ADAPTER.inputs.schema}
    assert info["contract"]["features"] == list(ADAPTER.features)
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/raw"} <= set(schema["paths"])
    raw_row = schema["components"]["schemas"]["RawRow"]
    assert set(raw_row["properties"]) == {ADAPTER.id, *ADAPTER.inputs.schema.names}
    assert set(raw_row["required"]) == set(ADAPTER.inputs.schema.names)
    assert "additionalProp1" not in json.dumps(schema)


@needs_inputs
def test_bad_raw_rows_are_422_naming_the_column(tmp_path):
    deployed, _ = tiny_deployed(tmp_path, 2)
    client = TestClient(serve.create_app(deployed, max_rows=MAX_ROWS, max_bytes=MAX_BYTES))
    first = ADAPTER.inputs.schema[0]
    missing = domain_row()
    del missing[first.name]
    wrong = {**domain_row(), first.name: [] if pa.types.is_string(first.type) else "text"}
    for row in (missing, wrong):
        response = client.post("/predict/raw", json={"rows": [domain_row(), row]})
        assert response.status_code == 422, response.text
        [item] = response.json()["detail"]
        assert item["loc"] == ["body", "rows", 1, first.name], item
    # Raw columns are not engineered ones: a raw row sent to /predict lacks the features
    # (unless the adapter's features are its snapshot columns as they are, as in a plain table).
    engineered_only = set(ADAPTER.features) - set(ADAPTER.inputs.schema.names)
    if engineered_only:
        response = client.post("/predict", json={"rows": [domain_row()]})
        assert response.status_code == 422, response.text
        assert {item["loc"][-1] for item in response.json()["detail"]} <= engineered_only


# --- the pipeline's model, over real HTTP on loopback ------------------------


@pytest.fixture(scope="module")
def service(reproduced):
    """Base URL of a running service on a free loopback port; stopped afterwards."""
    app = serve.create_app(load(reproduced), max_rows=MAX_ROWS, max_bytes=MAX_BYTES)
    with running_service(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def sample(reproduced) -> pd.DataFrame:
    return sample_rows(pd.read_parquet(reproduced / TEST_FEATURES))


@pytest.fixture(scope="module")
def manifest(reproduced) -> dict:
    return json.loads((reproduced / config.MANIFEST.relative_to(config.ROOT)).read_text())


@pytest.mark.long
def test_valid_rows_get_the_evaluate_stage_probabilities(client, sample, reproduced, manifest):
    response = client.post("/predict", json={"rows": as_json_rows(sample.drop(columns=ADAPTER.target))})
    assert response.status_code == 200, response.text
    body = response.json()
    saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS).set_index(ADAPTER.id).loc[sample[ADAPTER.id]]
    got = pd.DataFrame(body["predictions"])
    assert got[ADAPTER.id].tolist() == sample[ADAPTER.id].tolist()
    # Exact bits through JSON: floats are written in their shortest round-trip form.
    classes = manifest["classes"]
    if len(classes) == 2:
        pairs = [(got["probability"], saved["probability"])]
    else:
        pairs = [(got["probabilities"].map(lambda p, c=c: p[str(c)]), saved[f"probability_{c}"]) for c in classes]
    for served, evaluated in pairs:
        assert np.array_equal(
            served.to_numpy(dtype=np.float64).view(np.int64), evaluated.to_numpy(dtype=np.float64).view(np.int64)
        )
    assert got["label"].tolist() == saved["label"].tolist()
    assert body["ignored_columns"] == [] and body["model_sha256"] == manifest["model_sha256"]


@pytest.mark.long
@pytest.mark.skipif(not ADAPTER.categorical, reason="the adapter has no categorical features")
def test_unknown_categories_and_extra_fields_are_reported(client, sample):
    column = ADAPTER.categorical[-1]
    rows = as_json_rows(sample.head(3).drop(columns=[ADAPTER.target, ADAPTER.id]))
    rows[0][column], rows[1][column], rows[2][column] = UNSEEN, None, "YY" + UNSEEN
    rows[1]["not_a_feature"] = "N12345"
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unknown_categories"][column] == {"unknown": 2, "missing": 1}
    assert body["ignored_columns"] == ["not_a_feature"]
    assert all(p[ADAPTER.id] is None for p in body["predictions"])


def _bad(sample: pd.DataFrame, edit) -> dict:
    rows = as_json_rows(sample.head(2).drop(columns=ADAPTER.target))
    edit(rows[1])
    return {"rows": rows}


def _bad_requests():
    """(name, body(sample), status, texts) from the active adapter's features."""
    categorical, numeric = ADAPTER.categorical, ADAPTER.numeric
    cases = [
        ("no rows", lambda s: {"rows": []}, 422, ["rows", "at least 1"]),
        ("no rows key", lambda s: {"records": []}, 422, ["rows", "Field required"]),
        (
            "too many rows",
            lambda s: {"rows": as_json_rows(s.drop(columns=ADAPTER.target).head(1)) * (MAX_ROWS + 1)},
            413,
            [f"{MAX_ROWS + 1} rows exceed the limit of {MAX_ROWS}"],
        ),
        (
            "feature missing",
            lambda s: _bad(s, lambda r: r.pop(ADAPTER.features[-1])),
            422,
            [ADAPTER.features[-1], "Field required"],
        ),
    ]
    if numeric:
        cases += [
            (
                "text as number",
                lambda s: _bad(s, lambda r: r.update({numeric[0]: "June"})),
                422,
                [numeric[0], "valid number"],
            ),
            (
                "quoted number",
                lambda s: _bad(s, lambda r: r.update({numeric[-1]: "150"})),
                422,
                [numeric[-1], "valid number"],
            ),
        ]
    if categorical:
        cases.append(
            (
                "number as category",
                lambda s: _bad(s, lambda r: r.update({categorical[0]: 9})),
                422,
                [categorical[0], "valid string"],
            )
        )
    for name, (low, high) in ADAPTER.feature_ranges.items():
        if high is not None:
            cases.append(
                (
                    f"{name} above range",
                    lambda s, n=name, h=high: _bad(s, lambda r: r.update({n: h + 1})),
                    422,
                    [name, f"less than or equal to {high:g}"],
                )
            )
            break
        if low is not None:
            cases.append(
                (
                    f"{name} below range",
                    lambda s, n=name, lo=low: _bad(s, lambda r: r.update({n: lo - 1})),
                    422,
                    [name, f"greater than or equal to {low:g}"],
                )
            )
            break
    return cases


@pytest.mark.long
@pytest.mark.parametrize(
    "body, status, expected", [case[1:] for case in _bad_requests()], ids=[case[0] for case in _bad_requests()]
)
def test_bad_requests_get_a_4xx_that_names_the_problem(client, sample, body, status, expected):
    response = client.post("/predict", json=body(sample))
    assert response.status_code == status, response.text
    for text in expected:
        assert text in response.text


@pytest.mark.long
@pytest.mark.skipif(not ADAPTER.numeric, reason="the adapter has no numeric features")
def test_non_json_and_non_finite_numbers_are_422(client, sample):
    headers = {"content-type": "application/json"}
    response = client.post("/predict", content=b'{"rows": [', headers=headers)
    assert response.status_code == 422 and "JSON" in response.text
    column = ADAPTER.numeric[0]
    row = json.dumps(as_json_rows(sample.head(1).drop(columns=ADAPTER.target))[0])
    nan_row = row.replace(f'"{column}":', f'"{column}": NaN, "was":')  # Python's json would accept NaN
    assert nan_row != row
    response = client.post("/predict", content=f'{{"rows": [{nan_row}]}}'.encode(), headers=headers)
    assert response.status_code == 422 and column in response.text


@pytest.mark.long
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


@pytest.mark.long
def test_info_reports_the_manifest_identity(client, manifest):
    info = client.get("/info").json()
    assert info["model_sha256"] == manifest["model_sha256"]
    assert info["params_sha256"] == manifest["params_sha256"]
    assert info["training_data_sha256"] == manifest["training_data"]["sha256"]
    assert info["versions"] == manifest["versions"] and info["classes"] == manifest["classes"]
    assert info["threshold"] == frames.PARAMS.evaluate.threshold
    assert info["contract"]["features"] == manifest["features"]
    assert client.get("/health").json() == {"status": "ok", "model_sha256": manifest["model_sha256"]}


@pytest.mark.long
def test_openapi_schema_is_the_manifest_contract(client, manifest):
    row = client.get("/openapi.json").json()["components"]["schemas"]["Row"]
    assert row["required"] == manifest["features"]  # every feature, in the recorded order
    for name in manifest["numeric"]:
        low, high = manifest["ranges"].get(name, (None, None))
        bounds = row["properties"][name]["anyOf"][0]
        assert bounds["type"] == "number"
        # The declared range, else float32's: the most any estimator takes.
        assert bounds["minimum"] == (-LARGEST if low is None else float(low))
        assert bounds["maximum"] == (LARGEST if high is None else float(high))
    for name in manifest["categorical"]:
        assert row["properties"][name]["anyOf"][0]["type"] == "string"


@pytest.mark.long
def test_service_refuses_to_start_on_a_tampered_model(reproduced, tmp_path):
    # The image's layout (src/, models/, dvc.lock, params.yaml) with one byte changed.
    deploy = tmp_path / "app"
    shutil.copytree(reproduced / "src", deploy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in DEPLOYED_FILES:
        (deploy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(reproduced / name, deploy / name)
    model = deploy / config.MODEL.relative_to(config.ROOT)
    payload = bytearray(model.read_bytes())
    payload[len(payload) // 2] ^= 1
    model.write_bytes(bytes(payload))
    result = run(["python", "-m", "src.serving.serve", "--port", "9"], cwd=deploy, check=False)
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and config.MODEL.name in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.long
def test_several_workers_answer_with_the_evaluate_stages_bytes(reproduced, sample):
    # SERVING_WORKERS is the machine's: each process loads and verifies the model itself.
    import socket
    import subprocess

    from tests.conftest import project_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = project_env(**{serve.WORKERS_ENV: "2", config.THREADS_ENV: "1"})
    process = subprocess.Popen(
        ["python", "-m", "src.serving.serve", "--port", str(port)],
        cwd=reproduced,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        rows = as_json_rows(sample.drop(columns=ADAPTER.target))
        saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS).set_index(ADAPTER.id).loc[sample[ADAPTER.id]]
        with httpx.Client(base_url=url, timeout=60) as http:
            answers = [http.post("/predict", json={"rows": [row]}).json()["predictions"][0] for row in rows]
        assert [a["label"] for a in answers] == saved["label"].tolist()
        if "probability" in saved.columns:
            assert [a["probability"] for a in answers] == saved["probability"].tolist()
    finally:
        process.terminate()
        process.wait(timeout=60)
    bad = run(
        ["python", "-m", "src.serving.serve", "--port", "9"], cwd=reproduced, check=False, **{serve.WORKERS_ENV: "0"}
    )
    assert bad.returncode != 0 and f"{serve.WORKERS_ENV}='0'" in bad.stderr


def raw_test_rows(repo) -> pd.DataFrame:
    """The snapshot rows of the test split (ids in the test features), as gathered, in id order."""
    ids = pd.read_parquet(repo / TEST_FEATURES, columns=[ADAPTER.id])[ADAPTER.id]
    snapshot = pd.read_parquet(repo / config.SNAPSHOT.relative_to(config.ROOT))
    return snapshot.loc[snapshot[ADAPTER.id].isin(ids)].reset_index(drop=True)


@pytest.mark.long
@needs_inputs
def test_the_service_fed_raw_test_rows_gives_the_evaluate_stages_predictions(reproduced):
    # The skew test: every test entity as gathered (all its snapshot columns, the
    # outcome's too: ignored), through /predict/raw and the adapter's own derivation.
    rows = raw_test_rows(reproduced)
    saved = pd.read_parquet(reproduced / SAVED_PREDICTIONS)
    assert rows[ADAPTER.id].tolist() == saved[ADAPTER.id].tolist()
    batch = 5000
    client = TestClient(serve.create_app(load(reproduced), max_rows=batch, max_bytes=64 * 1024 * 1024))
    jsonable = rows.drop(
        columns=[
            name
            for name in rows.columns
            if not (pd.api.types.is_numeric_dtype(rows[name].dtype) or pd.api.types.is_string_dtype(rows[name].dtype))
        ]
    )
    got = []
    for start in range(0, len(jsonable), batch):
        response = client.post("/predict/raw", json={"rows": as_json_rows(jsonable.iloc[start : start + batch])})
        assert response.status_code == 200, response.text[:2000]
        got += response.json()["predictions"]
    served = pd.DataFrame(got)
    assert served[ADAPTER.id].tolist() == saved[ADAPTER.id].tolist()
    assert served["label"].tolist() == saved["label"].tolist()
    columns = [name for name in saved.columns if name.startswith("probability")]
    for name in columns:
        label = name.removeprefix("probability_")
        values = served[name] if name == "probability" else served["probabilities"].map(lambda p, c=label: p[c])
        assert np.array_equal(
            values.to_numpy(dtype=np.float64).view(np.int64), saved[name].to_numpy(dtype=np.float64).view(np.int64)
        ), name
    print(f"skew test: {len(served)} raw rows, {len(columns)} probability columns bit-identical")


@pytest.mark.long
@needs_inputs
def test_the_batch_command_fed_raw_test_rows_writes_the_evaluate_stages_bytes(reproduced, tmp_path):
    rows = tmp_path / "raw.parquet"
    raw_test_rows(reproduced).to_parquet(rows)
    output = tmp_path / "predictions.parquet"
    run(["python", "-m", "src.serving.predict", "--raw", "--input", str(rows), "--output", str(output)], cwd=reproduced)
    assert output.read_bytes() == (reproduced / SAVED_PREDICTIONS).read_bytes()
