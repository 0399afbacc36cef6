# The serving image: the verified model behind `python -m src.serving.serve`.
# `make image` builds it (src/tools/image.py: wheelhouse, base, build, digest).
# By hand, after `dvc repro` (or `dvc pull`) so models/model.pkl exists:
#   python -m src.tools.image wheels      # build/wheels/, hash-checked from requirements-serving.lock
#   docker build -t model-service . && docker run -p 8000:8000 model-service
#
# BASE: Python exactly as the manifest records it (models/manifest.json
# "versions"): the service refuses to load the model on another version. A
# pinned tag, not a digest: no digest for it is documented here, and one is
# not to be guessed. Where no registry is reachable, src/tools/image.py builds
# an equivalent base locally (Debian bookworm minbase with that same Python in
# /usr/local) and passes it here.
ARG BASE=python:3.11.7-slim-bookworm

# Stage 1: install the serving lock offline, from the wheelhouse, every file
# hash-checked against the lock; no bytecode (pyc files would embed their
# build time, and the image would differ from build to build).
FROM ${BASE} AS install
COPY requirements-serving.lock /tmp/
COPY build/wheels/ /tmp/wheels/
RUN python -m pip install --no-cache-dir --require-hashes --no-index --find-links /tmp/wheels --no-compile --no-warn-script-location --prefix /install -r /tmp/requirements-serving.lock

# Stage 2: the base, the installed packages, and only what serving reads.
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Its files are listed in the image's /etc: a fixed uid, no home, no log entries
# (lastlog and faillog would record the build's time).
ARG SOURCE_DATE_EPOCH=0
RUN useradd --no-create-home --no-log-init --uid 10001 --user-group app \
    && rm -f /etc/passwd- /etc/group- /etc/shadow- /etc/gshadow- /var/cache/ldconfig/aux-cache
COPY --from=install /install/ /usr/local/
WORKDIR /app
# Only what serving reads: the serving code and the generic pipeline modules it
# imports (params, artifact, predictions; no stage runs here), the params
# (threshold, threads), the lock the artifacts are checked against, and the
# model with its manifest. The engineered contract comes from the manifest; the
# raw rows of /predict/raw from the adapter's serving side, its package's
# __init__.py (schema and INPUTS). .dockerignore keeps each adapter's source.py
# (tables and query, SQLAlchemy) out, and the tools are not here.
COPY src/__init__.py src/
COPY src/pipeline/ src/pipeline/
COPY src/serving/ src/serving/
COPY src/datasets/ src/datasets/
COPY params.yaml dvc.lock ./
COPY models/model.pkl models/manifest.json models/

USER app
EXPOSE 8000
# SERVING_WORKERS (machine setting, default 1): uvicorn processes.
CMD ["python", "-m", "src.serving.serve", "--host", "0.0.0.0", "--port", "8000"]
