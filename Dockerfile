# The serving image: the verified model behind `python -m src.serving.serve`.
# Build after `dvc repro` (or `dvc pull`) so models/model.pkl exists:
#   docker build -t model-service . && docker run -p 8000:8000 model-service
#
# Python exactly as the manifest records it (models/manifest.json "versions"):
# the service refuses to load the model on another version. A pinned tag, not a
# digest: no digest for it is documented here, and one is not to be guessed.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The Makefile's install command (every package pinned and hash-checked), on
# the serving lock: the runtime packages of src/serving/ and the pipeline
# modules it imports, each at requirements.lock's version and hashes
# (`make lock` derives it), so no DVC, dvclive, test or lint tools.
COPY requirements-serving.lock ./
RUN python -m pip install --no-cache-dir --require-hashes -r requirements-serving.lock

RUN useradd --create-home --uid 10001 app

# Only what serving reads: the serving code and the generic pipeline modules it
# imports (params, artifact, predictions; no stage runs here), the params
# (threshold, threads), the lock the artifacts are checked against, and the
# model with its manifest. The model's contract comes from the manifest, so
# neither the dataset adapter nor the tools are in the image.
COPY src/__init__.py src/
COPY src/pipeline/ src/pipeline/
COPY src/serving/ src/serving/
COPY params.yaml dvc.lock ./
COPY models/model.pkl models/manifest.json models/

USER app
EXPOSE 8000
CMD ["python", "-m", "src.serving.serve", "--host", "0.0.0.0", "--port", "8000"]
