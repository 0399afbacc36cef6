"""The HTTP service against its own OpenAPI schema: requests generated from it, then hostile ones beyond it.

In process (ASGI, no network), on tiny models of the active adapter. No request may get a 5xx; every
response must be one the schema declares (status, content type, body); a 422 names the field at fault
(or, for a body that is not JSON, what is wrong with it) and a 415 the content type expected. Generation
is bounded and derandomized, so every run sends the same requests.
"""

from __future__ import annotations

import json
import typing
from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from src.pipeline.params import ModelName
from src.serving import serve
from src.serving.contract import _ID_LIMIT, LARGEST
from tests.template.frames import ADAPTER, PARAMS
from tests.template.test_predict import tiny_deployed
from tests.template.test_serve import as_json_rows

MAX_ROWS = 5
MAX_BYTES = 256 * 1024
# Generated requests per operation and mode: the fuzz is part of the fast suite.
EXAMPLES = 50
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Generation from the schema alone. By default schemathesis also feeds in literals found in the
# app's modules, so the requests would change with any edit to the source; with some literals it
# sent an id past the schema's int64 maximum as a valid request.
# A request the schema calls invalid because it has more than MAX_ROWS rows (its maxItems) is
# refused with the service's documented 413, not a 422: schemathesis's negative check does not
# expect 413 by default, so it is added to its default list (schemathesis 4's
# NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, less its "5xx": no request may get one);
# assert_names_the_problem checks that each 413 is earned.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "413"]
CONFIG = schemathesis.Config.from_dict(
    {
        "analysis": {"constants": {"enabled": False}},
        "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
    }
)
# The model the pipeline trains, and a random forest: its trees compute in float32, the
# strictest of the estimators about the numbers they take.
MODELS = sorted({PARAMS.train.model, "random_forest"})


def _app(tmp_path_factory, model: str, n_classes: int, **adapter_changes):
    deployed, rows = tiny_deployed(tmp_path_factory.mktemp(model), n_classes, model=model, **adapter_changes)
    app = serve.create_app(deployed, max_rows=MAX_ROWS, max_bytes=MAX_BYTES)
    return app, as_json_rows(rows.drop(columns=ADAPTER.target).head(1))[0]


@pytest.fixture(
    scope="module",
    params=[(model, 2 + index) for index, model in enumerate(MODELS)],
    ids=lambda param: f"{param[0]}-{param[1]}-classes",
)
def service(request, tmp_path_factory):
    """(app, its schema as schemathesis loaded it from /openapi.json, one valid row)."""
    app, row = _app(tmp_path_factory, *request.param)
    return app, schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG), row


def _request_names(body: object) -> set[str]:
    """Every name a 422 may blame: the schema's fields (both contracts'), and any key the request itself sent."""
    names = {"rows", ADAPTER.id, *ADAPTER.features, *(ADAPTER.inputs.schema.names if ADAPTER.inputs else [])}
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            names.update(str(key) for key in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def assert_names_the_problem(response, sent: object) -> None:
    """The 4xx body says what is wrong, where: the field for a 422, the expected type for a 415."""
    status = response.status_code
    assert status < 500, response.text
    if status == 422:
        detail = response.json()["detail"]
        assert detail, response.text
        names = _request_names(sent)
        for item in detail:
            loc, message = item["loc"], item["msg"]
            assert loc[0] == "body" and message, item
            # Only a body that is not an object (or not JSON at all) is blamed as a whole.
            assert len(loc) > 1 or not isinstance(sent, dict) or item["type"] == "json_invalid", item
            assert all(part in names for part in loc[1:] if isinstance(part, str)), item
    elif status == 415:
        assert "application/json" in response.json()["detail"]
    elif status == 413:
        # Only a request over a limit earns it: more rows than MAX_ROWS, or a body over MAX_BYTES.
        rows = sent.get("rows") if isinstance(sent, dict) else None
        over_rows = isinstance(rows, list) and len(rows) > MAX_ROWS
        assert over_rows or len(json.dumps(sent).encode()) > MAX_BYTES, (sent, response.text)
        assert "limit" in response.text or "Too Large" in response.text
    else:
        assert status < 400, response.text


def _ids_outside_the_schema(body: object) -> bool:
    rows = body.get("rows") if isinstance(body, dict) else None
    return isinstance(rows, list) and any(
        isinstance(row, dict) and isinstance(row.get(ADAPTER.id), int) and abs(row[ADAPTER.id]) > _ID_LIMIT
        for row in rows
    )


def _fuzz(operation, mode: GenerationMode, statuses: Counter) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def exchange(case):
        # Hypothesis mixes literals from the project's loaded modules into generation; in a
        # full run it sometimes puts an id beyond the schema's bound into a "valid" request.
        # Such a request is not valid by the schema, so it is not a positive case.
        assume(mode is not GenerationMode.POSITIVE or not _ids_outside_the_schema(case.body))
        response = case.call()
        statuses[operation.label, mode.value, response.status_code // 100] += 1
        assert_names_the_problem(response, case.body)
        # Status documented, content type and body as declared; valid requests
        # accepted (2xx), invalid ones refused (4xx); never a server error.
        # Raw rows meet their columns' schema one by one, yet may together be no
        # entity (HHMM with 76 minutes, February 31st): the derivation refuses them
        # (a 422 of type "contract", naming the row). JSON Schema cannot say so.
        excluded = (
            [positive_data_acceptance]
            if (
                operation.label == "POST /predict/raw"
                and response.status_code == 422
                and all(item["type"] == "contract" for item in response.json()["detail"])
            )
            else []
        )
        case.validate_response(response, excluded_checks=excluded)

    exchange()


@pytest.mark.slow
def test_generated_requests_never_get_a_5xx_and_conform_to_the_schema(service):
    app, schema, _ = service
    statuses: Counter = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    raw = {"POST /predict/raw"} if ADAPTER.inputs is not None else set()  # the raw contract, when declared
    assert {operation.label for operation in operations} == {"GET /health", "GET /info", "POST /predict", *raw}
    for operation in operations:
        # An operation without inputs has no invalid request to generate.
        for mode in list(GenerationMode) if operation.body else [GenerationMode.POSITIVE]:
            _fuzz(operation, mode, statuses)
    # Not vacuous: valid rows got predictions and invalid bodies were refused.
    assert statuses["POST /predict", "positive", 2] > EXAMPLES // 2, statuses
    if raw:
        assert statuses["POST /predict/raw", "positive", 2] > 0, statuses
    assert statuses["POST /predict", "negative", 4] > EXAMPLES // 2, statuses
    assert all(status < 5 for (_, _, status) in statuses), statuses


# --- hostile requests beyond the schema ----------------------------------------

# Replaced in a body's JSON text by raw JSON that json.dumps would never write.
RAW = "__RAW__"


def _row_with(row: dict, key: str, raw: str, drop: str | None = None) -> str:
    """{"rows": [row]} as JSON text, `key` set to the raw JSON `raw` (and `drop` removed)."""
    edited = {name: value for name, value in row.items() if name != drop}
    edited[key] = RAW
    return json.dumps({"rows": [edited]}).replace(json.dumps(RAW), raw)


def _open_numeric() -> str | None:
    """A numeric feature without a declared upper bound, if the adapter has one."""
    return next((name for name in ADAPTER.numeric if ADAPTER.feature_ranges.get(name, (None, None))[1] is None), None)


def _hostile_cases():
    """(name, body(row) as text or bytes, content type, status, names: texts the response must contain)."""
    numeric = ADAPTER.numeric[0] if ADAPTER.numeric else None
    categorical = ADAPTER.categorical[0] if ADAPTER.categorical else None
    open_numeric = _open_numeric()
    valid = lambda row: json.dumps({"rows": [row]})  # noqa: E731
    json_type = "application/json"
    cases = [
        # Lone surrogates: valid JSON escapes, not valid Unicode.
        ("surrogate as an extra key", lambda r: _row_with(r, "\\ud800", "1"), json_type, 200, ["ud800"]),
        ("surrogate in an ignored value", lambda r: _row_with(r, "note", '"\\ud800"'), json_type, 200, ["note"]),
        ("surrogate as the rows key", lambda r: valid(r).replace('"rows"', '"\\ud800"'), json_type, 422, ["rows"]),
        # Numbers Python's parser reads but JSON does not have, or that no float holds.
        ("NaN id", lambda r: _row_with(r, ADAPTER.id, "NaN"), json_type, 422, [ADAPTER.id]),
        (
            "whole float as the id",
            lambda r: _row_with(r, ADAPTER.id, f"{r[ADAPTER.id]}.0"),
            json_type,
            200,
            [f'"{ADAPTER.id}":7,'],
        ),
        ("id beyond int64", lambda r: _row_with(r, ADAPTER.id, str(2**63)), json_type, 422, [ADAPTER.id]),
        ("integer of 5000 digits", lambda r: _row_with(r, "note", "9" * 5000), json_type, 422, ["digits"]),
        # Nesting: past the parser's recursion limit, and deep but parseable in an ignored key.
        ("nested 50000 deep", lambda r: "[" * 50_000 + "]" * 50_000, json_type, 422, ["nested too deeply"]),
        ("nested 500 deep, ignored", lambda r: _row_with(r, "note", "[" * 500 + "]" * 500), json_type, 200, ["note"]),
        # Size.
        (
            "body over the byte limit",
            lambda r: json.dumps({"rows": [r], "pad": "x" * MAX_BYTES}),
            json_type,
            413,
            ["Too Large"],
        ),
        (
            "rows over the row limit",
            lambda r: json.dumps({"rows": [r] * (MAX_ROWS + 1)}),
            json_type,
            413,
            [f"{MAX_ROWS + 1} rows exceed the limit of {MAX_ROWS}"],
        ),
        # Not JSON, or JSON of the wrong shape.
        ("empty body", lambda r: b"", json_type, 422, ["body", "Field required"]),
        ("not UTF-8", lambda r: b"\xff\xfe" + valid(r).encode(), json_type, 422, ["not UTF-8", "0xff"]),
        ("byte order mark", lambda r: "\ufeff" + valid(r), json_type, 422, ["BOM"]),
        ("truncated", lambda r: valid(r)[:-3], json_type, 422, ["not JSON"]),
        ("null body", lambda r: "null", json_type, 422, ["body"]),
        ("rows of null", lambda r: '{"rows": [null]}', json_type, 422, ["rows"]),
        ("rows as an object", lambda r: '{"rows": {}}', json_type, 422, ["rows"]),
        # A repeated key: json.loads would keep the last value without a word.
        (
            "rows twice",
            lambda r: '{"rows": [], "rows": [' + json.dumps(r) + "]}",
            json_type,
            422,
            ["'rows' appears twice"],
        ),
        # Wrong or missing content types.
        ("no content type", valid, None, 415, ["application/json", "no Content-Type"]),
        ("text/plain", valid, "text/plain", 415, ["application/json", "text/plain"]),
        ("XML", valid, "application/xml", 415, ["application/json", "application/xml"]),
        ("multipart", valid, "multipart/form-data; boundary=x", 415, ["application/json", "multipart"]),
        ("form", lambda r: "rows=1", "application/x-www-form-urlencoded", 415, ["application/json"]),
    ]
    if numeric:
        cases += [
            ("NaN literal", lambda r: _row_with(r, numeric, "NaN"), json_type, 422, [numeric, "finite"]),
            ("Infinity literal", lambda r: _row_with(r, numeric, "Infinity"), json_type, 422, [numeric, "finite"]),
            ("-Infinity literal", lambda r: _row_with(r, numeric, "-Infinity"), json_type, 422, [numeric]),
            ("number beyond float64", lambda r: _row_with(r, numeric, "1e400"), json_type, 422, [numeric]),
            ("integer of 1000 digits", lambda r: _row_with(r, numeric, "9" * 1000), json_type, 422, [numeric]),
            ("boolean as a number", lambda r: _row_with(r, numeric, "true"), json_type, 422, [numeric]),
            (
                "feature twice",
                lambda r: _row_with(r, numeric, "1, " + json.dumps(numeric) + ": 2"),
                json_type,
                422,
                [f"{numeric!r} appears twice"],
            ),
        ]
    if open_numeric:
        cases.append(
            (
                "number beyond float32",
                lambda r: _row_with(r, open_numeric, repr(LARGEST * 2)),
                json_type,
                422,
                [open_numeric, "less than or equal to"],
            )
        )
    if categorical:
        cases += [
            (
                "surrogate in a category",
                lambda r: _row_with(r, categorical, '"\\ud800"'),
                json_type,
                422,
                [categorical, "surrogate"],
            ),
            ("number as a category", lambda r: _row_with(r, categorical, "1e400"), json_type, 422, [categorical]),
        ]
    return cases


def _parsed(body: str | bytes) -> object:
    """What the request meant, for naming checks: parsed as leniently as json can, else the text."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return body


@pytest.mark.slow
@pytest.mark.parametrize(
    "build, content_type, status, expected",
    [case[1:] for case in _hostile_cases()],
    ids=[case[0] for case in _hostile_cases()],
)
def test_hostile_requests_get_the_declared_4xx_naming_the_problem(service, build, content_type, status, expected):
    app, schema, row = service
    body = build(row)
    content = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    headers = {"content-type": content_type} if content_type else {}
    # raise_server_exceptions=False: a crash must show as the 500 a caller would get.
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/predict", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert_names_the_problem(response, _parsed(body))
    for text in expected:
        assert text in response.text, response.text
    if response.headers["content-type"].startswith("application/json"):
        # The response is one the schema declares for this status, with its body.
        schema["/predict"]["POST"].Case(media_type="application/json").validate_response(response)
    else:
        # Only the body-size limit answers before the app, in Starlette's plain text.
        assert status == 413 and response.text == "Content Too Large"


@pytest.mark.slow
@pytest.mark.skipif(not ADAPTER.numeric, reason="the adapter has no numeric features")
@pytest.mark.parametrize("model", typing.get_args(ModelName))
def test_a_number_past_float32_is_a_422_for_every_model(tmp_path_factory, model):
    """A random forest's trees refuse numbers past float32's range inside predict_proba: a 500
    before the contract bounded every numeric feature by it, whatever the model."""
    name = ADAPTER.numeric[0]
    app, row = _app(tmp_path_factory, model, 2, feature_ranges={})
    with TestClient(app, raise_server_exceptions=False) as client:
        inside = client.post("/predict", json={"rows": [{**row, name: LARGEST}]})
        beyond = client.post("/predict", json={"rows": [{**row, name: -LARGEST * 1.5}]})
    assert inside.status_code == 200, inside.text
    assert beyond.status_code == 422, beyond.text
    assert beyond.json()["detail"][0]["loc"] == ["body", "rows", 0, name]
