"""HTTP service for the deployed model (FastAPI on uvicorn): `make serve`.

    POST /predict   {"rows": [{feature: value, ...}, ...]}  -> labels and class probabilities
    GET  /info      the model's manifest identity, threshold and input contract
    GET  /health    liveness, with the model's SHA-256
    GET  /docs      the OpenAPI schema: one row is a pydantic model generated
                    from the manifest's feature lists (src/contract.py); the
                    Swagger UI page loads from this package, not a CDN

The service loads the model through src/predict.py, so it refuses to start
on a model that does not match dvc.lock and its manifest, and answers with the
same probabilities as the batch command and the evaluate stage. Bad input
gets a 4xx naming the problem: 422 for missing fields, wrong types, values out
of range, text that is not valid Unicode, or no rows; 415 for a body not sent
as application/json; 413 for a body over --max-bytes or more than --max-rows.
"""
# No `from __future__ import annotations`: FastAPI reads the endpoint's
# annotations at run time, and the request model is built in create_app.
import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import Field, create_model

from src.pipeline import artifact
from src.pipeline.params import ParamsError
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


def create_app(deployed: Deployed, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> FastAPI:
    contract = deployed.contract
    Row = contract.row_model()
    PredictRequest = create_model(
        "PredictRequest", rows=(list[Row], Field(min_length=1, description=f"1 to {max_rows} rows."))
    )
    classes = deployed.classes
    binary = len(classes) == 2
    Label = str if isinstance(classes[0], str) else int
    label_text = (f"{classes[1]!r} when probability >= {deployed.threshold}, else {classes[0]!r}" if binary
                  else f"the most probable of {classes}")
    RowPrediction = create_model(
        "RowPrediction",
        **{contract.id: (int | None, Field(default=None, description="The row's id, when the request gave one."))},
        label=(Label, Field(description=label_text)),
        probabilities=(dict[str, float], Field(description="Each class's probability, keyed by the class.")),
        **({"probability": (float, Field(description=f"Probability of the class {classes[1]!r}."))}
           if binary else {}),
    )
    PredictResponse = create_model(
        "PredictResponse",
        predictions=(list[RowPrediction], ...),
        unknown_categories=(dict[str, dict[str, int]], Field(
            description="Per categorical column: values not on the recorded list, and missing values; "
            "both went to the unknown bucket.")),
        ignored_columns=(list[str], Field(description="Keys in the rows that are not model inputs.")),
        model_sha256=(str, ...),
    )
    identity = deployed.identity()
    app = FastAPI(
        title=deployed.manifest.get("title") or "Model",
        summary="Predictions of the pipeline's verified model; the same bytes as its evaluate stage.",
        version=identity["model_sha256"][:12],
        max_body_size=max_bytes,  # 413 before the body is read past the limit
        docs_url=None,  # served below, from the vendored Swagger UI
        redoc_url=None,  # ReDoc would load from a CDN: blank offline, and /docs covers it
    )
    app.mount(SWAGGER_UI_URL, StaticFiles(directory=SWAGGER_UI), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad input, which fails to render (a 500)
        # when the input is NaN or Infinity (Python's JSON parser accepts them).
        # Where and what is enough to name the problem.
        problems = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]
        return JSONResponse(status_code=422, content={"detail": problems})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model_sha256": identity["model_sha256"]}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return {
            **identity,
            "contract": {
                "id": contract.id,
                "features": list(contract.features),
                "categorical": {name: len(values) for name, values in contract.categories.items()},
                "numeric_ranges": {name: list(bounds) for name, bounds in contract.ranges.items()},
            },
            "limits": {"max_rows": max_rows, "max_bytes": max_bytes},
        }

    @app.post("/predict", response_model=PredictResponse, dependencies=[Depends(require_json)])
    def predict(request: PredictRequest) -> dict[str, Any]:  # sync: runs in the threadpool
        rows = request.rows
        if len(rows) > max_rows:
            raise HTTPException(413, f"{len(rows)} rows exceed the limit of {max_rows} rows per request")
        frame = pd.DataFrame({name: [getattr(row, name) for row in rows] for name in contract.features})
        try:
            result = deployed.predict(frame)
        except ContractError as error:
            raise HTTPException(422, str(error)) from None
        ids = [getattr(row, contract.id) for row in rows]
        table = result.predictions
        probabilities = [dict(zip(map(str, classes), row, strict=True)) for row in result.probabilities.tolist()]
        predictions = []
        for row_id, label, row_probabilities in zip(ids, table["label"].tolist(), probabilities, strict=True):
            prediction = {contract.id: row_id, "label": label, "probabilities": row_probabilities}
            if binary:
                prediction["probability"] = row_probabilities[str(classes[1])]
            predictions.append(prediction)
        return {
            "predictions": predictions,
            "unknown_categories": result.unknown_categories,
            "ignored_columns": sorted({key for row in rows for key in (row.model_extra or {})}),
            "model_sha256": identity["model_sha256"],
        }

    return app


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
    parser.add_argument("--allow-version-mismatch", action="store_true",
                        help="serve on other Python/library versions than the manifest's (predictions may differ)")
    args = parser.parse_args(argv)
    try:
        deployed = load_model(allow_version_mismatch=args.allow_version_mismatch)
    except VersionMismatchError as error:
        sys.exit(f"serve: refusing to start: {error}\n{override_hint('serve')}")
    except (artifact.ArtifactError, ParamsError) as error:
        sys.exit(f"serve: refusing to start: {error}")
    app = create_app(deployed, max_rows=args.max_rows, max_bytes=args.max_bytes)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
