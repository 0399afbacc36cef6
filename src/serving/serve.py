"""HTTP service for the deployed model (FastAPI on uvicorn): `make serve`.

    POST /predict   {"rows": [{feature: value, ...}, ...]}  -> labels and class probabilities
                    (a regression model: each row's predicted value, `prediction`)
    POST /predict/raw  {"rows": [{snapshot column: value, ...}, ...]}: entities as
                    gathered; the adapter's own row-local derivation (the code
                    featurize runs) makes their features, then as /predict
    GET  /info      the model's manifest identity, threshold and input contract
    GET  /health    liveness, with the model's SHA-256
    GET  /docs      the OpenAPI schema: one row is a pydantic model generated
                    from the manifest's feature lists (src/contract.py); the
                    Swagger UI page loads from this package, not a CDN

The service loads the model through src/predict.py, so it refuses to start
on a model that does not match dvc.lock and its manifest, and answers with the
same probabilities as the batch command and the evaluate stage. Bad input
gets a 4xx naming the problem, never a 500: 422 for a body that is not JSON
(or not UTF-8, or repeats a key in one object, or nests too deeply), missing
fields, wrong types, values out of range, text that is not valid Unicode, or
no rows; 415 for a body not sent as application/json; 413 for a body over
--max-bytes or more than --max-rows. Every one of these is in the OpenAPI
schema, and a test fuzzes the service against it.

SERVING_WORKERS (a machine setting, like PIPELINE_THREADS; 1 when unset) is
the number of uvicorn processes: each answers with the same bytes. On two
cores one is the faster (docs/deployment.md). Batches of up to SMALL_BATCH rows
that the compiled pipeline answers (src/serving/compiled.py) are predicted on
the event loop, in about a millisecond; larger ones, and raw rows, in the
thread pool.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's
# annotations at run time, and the request model is built in create_app.
import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httptools  # noqa: F401  uvicorn's HTTP parser, named: "auto" falls back to h11 without a word
import pandas as pd
import uvicorn
import uvloop  # noqa: F401  its event loop, likewise (bench/serving.py: twice asyncio's requests/s)
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import Field, create_model

from src.pipeline import artifact
from src.pipeline.adapter import REGRESSION
from src.pipeline.params import ParamsError
from src.pipeline.predictions import PREDICTION
from src.serving.contract import ContractError
from src.serving.predict import Deployed, VersionMismatchError, load_model, override_hint

# A row of the example (22 features) is about 500 bytes of JSON: 4 MiB holds
# some 8,000 such rows. Both limits are flags.
MAX_BYTES = 4 * 1024 * 1024
MAX_ROWS = 5000
# Swagger UI for /docs, vendored by vendor/update.py (versions and hashes in
# vendor/vendored.json). FastAPI's default page loads it from a CDN, so /docs
# was blank offline or behind a firewall; here it ships in the image.
SWAGGER_UI = Path(__file__).resolve().parent / "static" / "swagger-ui"
SWAGGER_UI_URL = "/static/swagger-ui"
# How many service processes answer HTTP requests: a machine setting, like
# PIPELINE_THREADS (src/pipeline/config.py), since every worker gives the same
# bytes; never a param. Serving's alone, so no pipeline stage depends on it.
WORKERS_ENV = "SERVING_WORKERS"
# uvicorn's fast stack, by name (both in the serving lock).
SERVER = {"loop": "uvloop", "http": "httptools"}


def workers() -> int:
    """SERVING_WORKERS: the service's worker processes, 1 when unset."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return 1
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{WORKERS_ENV}={value!r}: give a whole number of service processes, 1 or more (unset, 1)")
    return count


def create_app(deployed: Deployed, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> FastAPI:
    """The service for `deployed`: /docs, /health, /info, /predict and, when the adapter declares
    INPUTS, /predict/raw (added in this order, which is the OpenAPI schema's)."""
    app = base_app(deployed, max_bytes)
    add_identity_routes(app, deployed, max_rows, max_bytes)
    route = predict_route(deployed, max_rows, max_bytes)
    add_predict(app, deployed, max_rows, route)
    if deployed.raw is not None:
        add_predict_raw(app, deployed, max_rows, route)
    return app


def base_app(deployed: Deployed, max_bytes: int) -> FastAPI:
    """The app before its endpoints: named by the manifest, the body limit, bodies parsed by
    parse_json, the vendored /docs page, and 422s that name the problem."""
    app = FastAPI(
        title=deployed.manifest.get("title") or "Model",
        summary="Predictions of the pipeline's verified model; the same bytes as its evaluate stage.",
        version=deployed.identity()["model_sha256"][:12],
        max_body_size=max_bytes,  # 413 before the body is read past the limit
        docs_url=None,  # served below, from the vendored Swagger UI
        redoc_url=None,  # ReDoc would load from a CDN: blank offline, and /docs covers it
    )
    app.router.route_class = StrictJSONRoute  # every route added after this parses bodies with parse_json
    app.mount(SWAGGER_UI_URL, StaticFiles(directory=SWAGGER_UI), name="swagger-ui")
    app.get("/docs", include_in_schema=False)(docs_page(app))
    app.exception_handler(RequestValidationError)(invalid_request)
    return app


def add_identity_routes(app: FastAPI, deployed: Deployed, max_rows: int, max_bytes: int) -> None:
    """GET /health and GET /info: which model answers, and what it takes."""
    model_sha256 = deployed.identity()["model_sha256"]
    description = info(deployed, max_rows, max_bytes)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model_sha256": model_sha256}

    @app.get("/info")
    def model_info() -> dict[str, Any]:
        return description


def predict_route(deployed: Deployed, max_rows: int, max_bytes: int) -> dict[str, Any]:
    """What both predict endpoints share: the answer's model, the 415 check, the refusals they declare."""
    PredictResponse, Problem = response_models(deployed)
    responses = {
        413: {"model": Problem, "description": f"The body is over {max_bytes} bytes or has over {max_rows} rows."},
        415: {"model": Problem, "description": "The body was not sent as application/json."},
    }
    return {"response_model": PredictResponse, "dependencies": [Depends(require_json)], "responses": responses}


def add_predict(app: FastAPI, deployed: Deployed, max_rows: int, route: dict[str, Any]) -> None:
    """POST /predict: engineered rows; on the event loop when the compiled pipeline answers the batch."""
    contract = deployed.contract
    PredictRequest = request_model("PredictRequest", contract.row_model(), max_rows)

    @app.post("/predict", summary="Predict engineered rows (the model's features)", **route)
    async def predict(request: PredictRequest) -> dict[str, Any]:
        rows = request.rows
        inline = deployed.compiled_for(len(rows)) is not None
        return await run(inline, deployed, rows, max_rows, lambda: deployed.predict_checked(contract.validated(rows)))


def add_predict_raw(app: FastAPI, deployed: Deployed, max_rows: int, route: dict[str, Any]) -> None:
    """POST /predict/raw: snapshot rows, derived by the adapter's INPUTS, then as /predict."""
    raw = deployed.raw
    RawPredictRequest = request_model("RawPredictRequest", raw.row_model(), max_rows)

    @app.post(
        "/predict/raw",
        summary="Predict entities as gathered (snapshot rows)",
        description="Each row holds the snapshot columns the features are derived from; the "
        "adapter's own derivation (the code the featurize stage runs) makes the features, which "
        "then meet /predict's contract. Other snapshot columns are ignored and named back.",
        **route,
    )
    async def predict_raw(request: RawPredictRequest) -> dict[str, Any]:
        rows = request.rows

        def derived() -> Any:
            return deployed.predict_raw(
                pd.DataFrame({name: [getattr(row, name) for row in rows] for name in raw.columns})
            )

        return await run(False, deployed, rows, max_rows, derived)  # pandas' derivation: not on the loop


async def run(inline: bool, deployed: Deployed, rows: list, max_rows: int, predict: Callable[[], Any]) -> Any:
    """answer(), `inline` on the event loop for a batch the compiled pipeline answers in about a
    millisecond (a hop to a thread costs as much again); else in the thread pool, so that a larger
    batch does not hold up the loop and every other connection."""
    if inline:
        return answer(deployed, rows, max_rows, predict)
    return await run_in_threadpool(answer, deployed, rows, max_rows, predict)


def request_model(name: str, row: type, max_rows: int) -> type:
    return create_model(
        name,
        rows=(
            list[row],
            Field(
                min_length=1,
                description=f"1 to {max_rows} rows.",
                # Declared, not enforced by pydantic: more rows are a 413, which the handler names.
                json_schema_extra={"maxItems": max_rows},
            ),
        ),
    )


def response_models(deployed: Deployed) -> tuple[type, type]:
    """The OpenAPI models of an answer and of a refusal."""
    classes = deployed.classes
    binary = len(classes) == 2
    row_id = {
        deployed.contract.id: (int | None, Field(default=None, description="The row's id, when the request gave one."))
    }
    if deployed.task == REGRESSION:
        RowPrediction = create_model(
            "RowPrediction",
            **row_id,
            prediction=(float, Field(description=f"The predicted {deployed.manifest.get('target')!r}.")),
        )
    else:
        Label = str if isinstance(classes[0], str) else int
        label_text = (
            f"{classes[1]!r} when probability >= {deployed.threshold}, else {classes[0]!r}"
            if binary
            else f"the most probable of {classes}"
        )
        RowPrediction = create_model(
            "RowPrediction",
            **row_id,
            label=(Label, Field(description=label_text)),
            probabilities=(dict[str, float], Field(description="Each class's probability, keyed by the class.")),
            **(
                {"probability": (float, Field(description=f"Probability of the class {classes[1]!r}."))}
                if binary
                else {}
            ),
        )
    PredictResponse = create_model(
        "PredictResponse",
        predictions=(list[RowPrediction], ...),
        unknown_categories=(
            dict[str, dict[str, int]],
            Field(
                description="Per categorical column: values not on the recorded list, and missing values; "
                "both went to the unknown bucket."
            ),
        ),
        ignored_columns=(list[str], Field(description="Keys in the rows that are not model inputs.")),
        model_sha256=(str, ...),
    )
    Problem = create_model("Problem", detail=(str, Field(description="What is wrong, and what is expected.")))
    return PredictResponse, Problem


def docs_page(app: FastAPI) -> Callable[[Request], HTMLResponse]:
    def docs(request: Request) -> HTMLResponse:
        # Behind a proxy that mounts the app under a prefix, as FastAPI's own page does.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{SWAGGER_UI_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_UI_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_UI_URL}/favicon-32x32.png",
        )

    return docs


async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    # FastAPI's default echoes each bad input, which fails to render (a 500)
    # when the input is NaN or Infinity (Python's JSON parser accepts them).
    # Where and what is enough to name the problem.
    return JSONResponse(
        status_code=422,
        content={"detail": [problem(item["loc"], item["msg"], item["type"]) for item in error.errors()]},
    )


def info(deployed: Deployed, max_rows: int, max_bytes: int) -> dict[str, Any]:
    """/info: the model's identity, both input contracts and the limits."""
    contract, raw = deployed.contract, deployed.raw
    return {
        **deployed.identity(),
        "task": deployed.task,
        "contract": {
            "id": contract.id,
            "features": list(contract.features),
            "categorical": {name: len(values) for name, values in contract.categories.items()},
            "numeric_ranges": {name: list(bounds) for name, bounds in contract.ranges.items()},
        },
        # /predict/raw's rows: the snapshot columns the adapter's derivation reads (null: engineered only).
        "raw_contract": None
        if raw is None
        else {
            "endpoint": "/predict/raw",
            "id": raw.id,
            "columns": {column.name: str(column.type) for column in raw.inputs.schema},
            "required": [
                name for name in raw.columns if name in raw.inputs.domains and raw.inputs.domains[name].required
            ],
        },
        "limits": {"max_rows": max_rows, "max_bytes": max_bytes},
    }


def answer(deployed: Deployed, rows: list, max_rows: int, predict: Callable[[], Any]) -> dict[str, Any]:
    """The response to `rows`: `predict()`'s predictions, keyed by each row's id (as sent, or null)."""
    if len(rows) > max_rows:
        raise HTTPException(413, f"{len(rows)} rows exceed the limit of {max_rows} rows per request")
    try:
        result = predict()
    except ContractError as error:
        raise HTTPException(422, [problem(["body", "rows"], str(error), "contract")]) from None
    key, classes = deployed.contract.id, deployed.classes
    ids = [getattr(row, key) for row in rows]
    table = result.predictions
    if deployed.task == REGRESSION:
        predictions = [
            {key: row_id, PREDICTION: value} for row_id, value in zip(ids, table[PREDICTION].tolist(), strict=True)
        ]
    else:
        predictions = []
        for row_id, label, values in zip(ids, table["label"].tolist(), result.probabilities.tolist(), strict=True):
            probabilities = dict(zip(map(str, classes), values, strict=True))
            prediction = {key: row_id, "label": label, "probabilities": probabilities}
            if len(classes) == 2:
                prediction["probability"] = probabilities[str(classes[1])]
            predictions.append(prediction)
    return {
        "predictions": predictions,
        "unknown_categories": result.unknown_categories,
        "ignored_columns": sorted({key for row in rows for key in (row.model_extra or {})}),
        "model_sha256": deployed.manifest["model_sha256"],
    }


def problem(loc: Any, msg: str, kind: str) -> dict[str, Any]:
    """One item of a 422's `detail`, as FastAPI's schema declares it: where, what, and its kind.

    Text that UTF-8 cannot hold (a lone surrogate, which JSON's escapes allow)
    is escaped: the response must encode, or the error itself becomes a 500.
    """

    def sendable(value: Any) -> Any:
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value

    return {"loc": [sendable(part) for part in loc], "msg": sendable(msg), "type": kind}


class DuplicateKeyError(ValueError):
    """An object in the body names one key twice."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKeyError(key)
        found[key] = value
    return found


def parse_json(body: bytes) -> Any:
    """The body as JSON, or an HTTPException(422) that names what is wrong with it.

    Stricter than the json module, for reasons: the text must be UTF-8 (an
    undecodable byte was FastAPI's bare 400 "There was an error parsing the
    body"), and no object may repeat a key (json.loads keeps the last value
    without a word, so `{"x": 1, "x": 2}` would be predicted on 2). Nesting
    past the parser's recursion limit and integers of more digits than Python
    converts are 422s too. NaN and Infinity are parsed, so the row model
    refuses them with the field's name.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HTTPException(
            422,
            [
                problem(
                    ["body", error.start],
                    f"the body is not UTF-8: byte 0x{body[error.start]:02x} at position {error.start}",
                    "json_invalid",
                )
            ],
        ) from None
    where: list[Any] = ["body"]
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        where.append(error.pos)
        message = f"the body is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
    except DuplicateKeyError as error:
        message = f"the key {error.args[0]!r} appears twice in one object: which value is meant is ambiguous"
    except RecursionError:
        message = "the body is nested too deeply to parse: a request is an object of rows of values"
    except ValueError as error:  # an integer of more digits than Python converts
        message = f"the body holds a number that cannot be read: {error}"
    raise HTTPException(422, [problem(where, message, "json_invalid")])


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose body is parsed by parse_json. FastAPI reads JSON bodies
    through `request.json()`; a request of this class overrides it."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


def require_json(request: Request) -> None:
    """415 for a body that is not JSON. FastAPI would pass such a body on as
    bytes, to fail as a 422 about the body's shape that hides the cause."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    # The types FastAPI parses as JSON: application/json and application/*+json.
    if media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json")):
        return
    found = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    raise HTTPException(415, f"the body must be JSON: send Content-Type application/json (got {found})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.serving.serve", description="Serve the model over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS, help="rows per request (else 413)")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="request body bytes (else 413)")
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="serve on other Python/library versions than the manifest's (predictions may differ)",
    )
    args = parser.parse_args(argv)
    try:
        processes = workers()
        deployed = load_model(allow_version_mismatch=args.allow_version_mismatch)
    except VersionMismatchError as error:
        sys.exit(f"serve: refusing to start: {error}\n{override_hint('serve')}")
    except (artifact.ArtifactError, ParamsError, ValueError) as error:  # ValueError: a bad PIPELINE_THREADS
        sys.exit(f"serve: refusing to start: {error}")
    if processes == 1:
        app = create_app(deployed, max_rows=args.max_rows, max_bytes=args.max_bytes)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", **SERVER)
        return
    # Several processes (SERVING_WORKERS): uvicorn starts each from an import
    # string, and each loads and verifies the model itself, with these options.
    os.environ[_WORKER_OPTIONS_ENV] = json.dumps(
        {"allow_version_mismatch": args.allow_version_mismatch, "max_rows": args.max_rows, "max_bytes": args.max_bytes}
    )
    # A worker verifies and unpickles the model before it answers uvicorn's
    # health check: 5 s (uvicorn's default) is too short on a busy machine,
    # where the supervisor then kills and restarts workers without end.
    uvicorn.run(
        "src.serving.serve:worker_app",
        factory=True,
        workers=processes,
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_worker_healthcheck=WORKER_START_S,
        **SERVER,
    )


WORKER_START_S = 120
# The options a worker process reads (set by main, for SERVING_WORKERS > 1).
_WORKER_OPTIONS_ENV = "SERVING_WORKER_OPTIONS"


def worker_app() -> FastAPI:
    """One worker's app: the model loaded and verified in this process, with main's options."""
    options = json.loads(os.environ[_WORKER_OPTIONS_ENV])
    deployed = load_model(allow_version_mismatch=options["allow_version_mismatch"])
    return create_app(deployed, max_rows=options["max_rows"], max_bytes=options["max_bytes"])


if __name__ == "__main__":
    main()
