# The front door. `make repro` and `make test` are all a fresh clone needs.
# Every target sets up (or reuses) .venv from requirements.lock first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= 1
# The one install command: every package pinned and hash-checked, so a fresh
# machine gets exactly the locked environment (the Dockerfile installs the
# serving lock with the same checks, offline from a wheelhouse).
PIP_INSTALL := pip install --no-cache-dir --require-hashes -r requirements.lock

# Stage commands in dvc.yaml run `python`: make it the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

SOURCE_DB := data/source/source.sqlite
STAMP := $(VENV)/.installed-from-lock

.PHONY: help setup source repro test test-unit test-long test-all lint format categories lock clean clean-venv
.DEFAULT_GOAL := help

## list every target with what it does (from the `## ` line above each target)
help:
	@awk '/^## /{doc = substr($$0, 4); next} /^[a-zA-Z_-]+:/{if (doc != "") {split($$0, name, ":"); \
	  printf "make %-15s %s\n", name[1], doc}; doc = ""}' $(MAKEFILE_LIST)

# The stamp holds a copy of the lock the venv was installed from; a checkout
# that merely touched the lock keeps the venv as it is. uv installs the lock
# 4-5x faster than pip: it is bootstrapped from the lock itself (its pinned
# version and hashes, through pip --require-hashes) whenever the venv's uv is
# not the locked one, then installs every package with --require-hashes. pip
# stays the fallback, with the same lock and hashes.
# - No venv (or no stamp: not made here): a fresh venv from scratch.
# - The lock changed: `uv pip sync` updates the venv in place, hash-checked,
#   installing what is new and removing what the lock no longer lists, so the
#   venv ends exactly as the lock says (as a fresh install would; a sync that
#   fails falls back to the fresh venv).
# - .venv is a symlink (working clones link another checkout's venv): never
#   synced in place, which would change that checkout's environment; the link
#   is replaced by a fresh venv of this checkout's own lock, as before.
# --compile-bytecode, as pip does: uv skips it by default, and where
# PYTHONDONTWRITEBYTECODE is set every dvc and python process then compiled
# its imports again (the test suite took 8 min instead of 4.5).
UV_FLAGS := --python $(BIN)/python --require-hashes --compile-bytecode
# The lock's own uv (pinned, hash-checked) into .venv, unless that version is there already.
UV_BOOTSTRAP = { sed -n '/^uv==/,/\# via/p' requirements.lock > $(VENV)/uv-requirement.txt \
  && locked=$$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements.lock) \
  && if [ "$$($(BIN)/uv --version 2>/dev/null | cut -d' ' -f2)" = "$$locked" ]; then :; else \
       echo "setup: bootstrapping uv $$locked from requirements.lock (pinned, hash-checked)" \
       && $(BIN)/python -m pip install -q --no-cache-dir --require-hashes -r $(VENV)/uv-requirement.txt; fi; }
$(STAMP): requirements.lock
	@if [ -x $(BIN)/python ] && cmp -s requirements.lock $(STAMP); then touch $(STAMP); exit 0; fi; \
	set -e; fresh=1; \
	if [ -L $(VENV) ]; then \
	  echo "setup: $(VENV) links to another checkout's venv ($$(readlink $(VENV))), installed from another lock:"; \
	  echo "setup: replacing the link by this checkout's own venv (the linked one is left as it is)"; \
	  rm -f $(VENV); \
	elif [ -x $(BIN)/python ] && [ -f $(STAMP) ]; then \
	  echo "setup: requirements.lock changed; syncing $(VENV) in place (hash-checked)"; \
	  if $(UV_BOOTSTRAP) && $(BIN)/uv pip sync $(UV_FLAGS) requirements.lock; then fresh=0; else \
	    echo "setup: the in-place sync failed; building $(VENV) from scratch"; fi; \
	fi; \
	if [ $$fresh = 1 ]; then \
	  rm -rf $(VENV); $(PYTHON) -m venv $(VENV); \
	  if $(UV_BOOTSTRAP) && $(BIN)/uv pip install $(UV_FLAGS) -r requirements.lock; then :; else \
	    echo "setup: uv failed; installing with pip instead (slower, same lock and hashes)"; \
	    $(BIN)/python -m $(PIP_INSTALL); fi; \
	fi; \
	cp requirements.lock $(STAMP)

## create .venv from requirements.lock, or sync it in place after the lock changed
setup: $(STAMP)

# The source history, when SOURCE_URL is unset (a set SOURCE_URL means the
# data lives elsewhere): a history that ingest tracked with DVC comes from the
# cache or the remote (`dvc pull` of its pointer, again whenever git brings a
# newer pointer); otherwise the adapter's demo builder makes it. An adapter
# with neither says how data arrives (src/tools/source.py).
$(SOURCE_DB): $(wildcard $(SOURCE_DB).dvc) | $(STAMP)
	@if [ -n "$$SOURCE_URL" ]; then echo "SOURCE_URL is set: the history is read there"; \
	elif [ -f $(SOURCE_DB).dvc ]; then echo "source: dvc pull $(SOURCE_DB).dvc"; \
	  $(BIN)/dvc pull $(SOURCE_DB).dvc || { echo "source: the history is missing from the DVC cache and \
the remote: dvc push it from the machine that ingested it (docs/remotes.md)" >&2; exit 1; }; \
	  touch $(SOURCE_DB); \
	else $(BIN)/python -m src.tools.source --scale $(SCALE) --output $(SOURCE_DB); fi

# Explicit `make source` always rebuilds (e.g. at another SCALE).
## (re)build the adapter's demo source database [SCALE=N]
source: $(STAMP)
	$(BIN)/python -m src.tools.source --scale $(SCALE) --output $(SOURCE_DB)

# REPRO_FLAGS=--force reruns every stage instead of trusting the run-cache.
# The params check comes first, before DVC reads params.yaml (DVC cannot read
# an unquoted date) and before it deletes any stage's outputs: a typo leaves
# the deployed model in place (src/pipeline/check_params.py; docs/faults.md).
## set up .venv, build the demo source if missing, check params.yaml, run dvc repro
repro: $(STAMP) $(SOURCE_DB)
	$(BIN)/python -m src.pipeline.check_params --check --recorded --sweep
	$(BIN)/dvc repro $(REPRO_FLAGS)
	@$(BIN)/python -m src.tools.headline

# Two workers, a test file each at a time (module fixtures stay shared): the
# end-to-end tests spend most of their time in dvc subprocesses. Files are handed
# out in the conftest's order, heaviest first (--no-loadscope-reorder: xdist's own
# order, by test count, handed test_pipeline.py's minutes-long rebuild out last).
# -rfEs lists every failed, erroring and skipped test (with its reason) at the end.
# PYTEST_ARGS adds pytest options (e.g. --ignore=FILE). Three tiers (markers in
# pyproject.toml); CI runs `make test`, then `make test-long` (.ci/run).
# PYTHONDONTWRITEBYTECODE emptied (unset, for Python): where it is set, every worker
# rewrote every test module's asserts again at collection (10 s each); with it
# unset, pytest keeps them in __pycache__ (git- and dvc-ignored).
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -rfEs -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)
## set up .venv and the demo source, run every test but the long ones (two workers, about 5 min)
test: $(STAMP) $(SOURCE_DB)
	$(PYTEST) -m "not long" tests

## the fast tests only: generic code on tiny frames, in process (about 30 s)
test-unit: $(STAMP) $(SOURCE_DB)
	$(PYTEST) -m "not slow and not long" tests

## the long tests only: the fork, template updates, the image, the fault matrix, sweeps (CI runs them)
test-long: $(STAMP) $(SOURCE_DB)
	$(PYTEST) -m long tests

## every test, in one run: what make test and make test-long run together
test-all: $(STAMP) $(SOURCE_DB)
	$(PYTEST) tests

# Checked before `dvc repro featurize` reads params.yaml; not the recorded lists (this writes them).
## record category lists and classes of the training data into params.yaml
categories: $(STAMP) $(SOURCE_DB)
	$(BIN)/python -m src.pipeline.check_params --check
	$(BIN)/python -m src.tools.categories

# The experiments table that fits a terminal (src/tools/exps.py; docs/sweeps.md):
# it prints the `dvc exp show` command it runs, to reuse and adapt.
.PHONY: exps
## the experiments table: headline metrics, best first, and the params that differ
exps: $(STAMP)
	@$(BIN)/python -m src.tools.exps

# JupyterLab (in requirements.lock) on the exploration notebook, with the
# project as its root; its kernel is this venv's Python. jupytext saves the
# notebook's paired script too. Jupyter refuses to run as root without
# --allow-root (containers, CI machines). NOTEBOOK_FLAGS adds options (--port=8889).
.PHONY: notebook
## JupyterLab on notebooks/explore.ipynb (a locked run read through dvc.api; docs/notebook.md)
notebook: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks/explore.ipynb \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(NOTEBOOK_FLAGS)

# The experiment that `make exps` ranks first by validation (within the
# workspace's upstream params), or EXP, into the workspace; then review and
# commit. The test metrics of the applied experiment are the figure to report.
.PHONY: promote
## apply the best experiment by validation (or EXP=..) to the workspace: params, lock, outputs
promote: $(STAMP)
	@exp="$(EXP)"; if [ -z "$$exp" ]; then exp=$$($(BIN)/python -m src.tools.exps --best) || exit 1; fi; \
	echo "dvc exp apply $$exp"; $(BIN)/dvc exp apply "$$exp" && \
	echo "review, then: git add params.yaml dvc.lock models/manifest.json metrics eval && git commit -m 'Promote $$exp'"

# A fork's own adapter (src/tools/scaffold.py) and, once it is in use, the
# example's removal (src/tools/drop_example.py); docs/adapt.md.
.PHONY: new-adapter drop-example
## the skeleton of your own dataset adapter, its tests and params: NAME=.. (docs/adapt.md)
new-adapter: $(STAMP)
	$(if $(NAME),,$(error NAME is missing: make new-adapter NAME=your_data_set))
	$(BIN)/python -m src.tools.scaffold $(NAME)

## remove the flights example, its package and outputs (after new-adapter)
drop-example: $(STAMP)
	$(BIN)/python -m src.tools.drop_example

.PHONY: ingest
## append a CSV/Parquet table to the source history: FILE=.. TABLE=.. ID=.. [RECORDED_AT=..] [PARSE_DATES=col,..]
ingest: $(STAMP)
	$(if $(and $(FILE),$(TABLE),$(ID)),,$(error make ingest FILE=table.csv TABLE=name ID=id_column [RECORDED_AT=column|YYYY-MM-DD] [PARSE_DATES=column,...]))
	$(BIN)/python -m src.tools.ingest $(FILE) --table $(TABLE) --id $(ID) $(if $(RECORDED_AT),--recorded-at $(RECORDED_AT)) \
	  $(if $(PARSE_DATES),--parse-dates $(PARSE_DATES))

# requirements-serving.lock (the serving image's) is resolved against the fresh
# requirements.lock (-c), so each of its pins and hashes is the full lock's.
# uv is quiet (-q: its output is the whole lock again); src/tools/lock_summary.py
# prints what changed against the lock as it was. The next make target syncs .venv.
# The arguments' order is the one uv records in each lock's header: keep it.
LOCK_FLAGS := --generate-hashes --no-emit-index-url --no-emit-find-links --python-version 3.11
## re-pin requirements.in into requirements.lock and the serving lock (hashes); prints what changed
lock: $(STAMP)
	@set -e; before=$$(mktemp); trap 'rm -f "$$before"' EXIT; cp requirements.lock "$$before"; \
	$(BIN)/uv pip compile -q requirements.in $(LOCK_FLAGS) -o requirements.lock; \
	$(BIN)/uv pip compile -q requirements-serving.in -c requirements.lock $(LOCK_FLAGS) -o requirements-serving.lock; \
	$(BIN)/python -m src.tools.lock_summary "$$before" requirements.lock requirements-serving.lock
	@echo "lock: commit requirements.in and both locks; any make target (make setup) then syncs .venv to them"

## ruff check and ruff format --check (settings in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The formatter is ruff's (black's style at 120 columns); the pre-commit hook runs it too.
## format every Python file with ruff format, then fix what ruff check can fix
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Only git-ignored scratch that is rebuilt on demand: bytecode, test and lint
# caches, `dvc plots show` pages, the benchmark's scaled sources. Kept: .venv
# (make clean-venv), data/source (make source rebuilds it), .dvc/cache and every
# file DVC tracks (the run-cache and outputs are what makes repro instant).
## delete caches and scratch files; keeps .venv, data, the DVC cache and outputs
clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache dvc_plots bench/.cache

## delete .venv (the next target rebuilds it from requirements.lock)
clean-venv:
	rm -rf $(VENV)

# --- Verifying a commit reproduces (src/tools/verify/, src/tools/doctor.py; docs/verify.md) ---
# make verify [REV=<commit or tag>] [VARY=1]: rebuild REV (default HEAD) in a
# fresh temporary clone and compare its dvc.lock path by path; VARY=1 repeats
# it under perturbed environments. make doctor: environment vs requirements.lock.
.PHONY: verify doctor
## rebuild a commit in a fresh clone and compare dvc.lock [REV=..] [VARY=1]
verify: $(STAMP) $(SOURCE_DB)
	$(BIN)/python -m src.tools.verify --rev $(or $(REV),HEAD) $(if $(filter 1,$(VARY)),--vary)

## compare this environment with requirements.lock and the manifest
doctor: $(STAMP)
	$(BIN)/python -m src.tools.doctor

# --- Data versions (src/tools/data_version.py; docs/data-versions.md) ---
# make data-version AS_OF=2013-06-30: in a temporary worktree at HEAD, set
# gather.as_of, dvc repro, commit params.yaml, dvc.lock and the git-tracked
# outputs there, dvc push, tag data/<AS_OF>. The current branch does not move.
# make data-restore REF=data/2013-06-30 (a tag; TAG= works too) or REF=main (a
# branch): check it out and bring its data from the cache or the remote.
.PHONY: data-version data-restore data-versions
## cut a data version: AS_OF=YYYY-MM-DD (dvc repro in a worktree, commit, push, tag)
data-version: $(STAMP) $(SOURCE_DB)
	$(if $(AS_OF),,$(error AS_OF is missing: make data-version AS_OF=YYYY-MM-DD))
	$(BIN)/python -m src.tools.data_version cut $(AS_OF)

## check out a data version or branch and bring its data: REF=data/YYYY-MM-DD|<branch>
data-restore: $(STAMP)
	$(if $(or $(REF),$(TAG)),,$(error REF is missing: make data-restore REF=data/YYYY-MM-DD or REF=<branch> (see make data-versions)))
	$(BIN)/python -m src.tools.data_version restore $(or $(REF),$(TAG))

## list the data versions (tags data/*)
data-versions:
	@git tag --list 'data/*' -n1

# --- Benchmark (bench/; bench/README.md) ---
# make bench: every figure the median of BENCH_REPEATS runs with a same-run
# reference, at each of BENCH_SCALES (a scaled source is built once and cached
# in bench/.cache/), BENCH_SWEEP queued experiments; writes bench/results.json.
# make bench BENCH_QUICK=1: a smoke run (1 repeat, scale 1) to bench/results-quick.json.
BENCH_REPEATS ?= 3
BENCH_SCALES ?= 1 10
BENCH_SWEEP ?= 8
BENCH_QUICK ?= 0
.PHONY: bench
## measure speed and memory against same-run references [BENCH_QUICK=1]
bench: $(STAMP) $(SOURCE_DB)
	$(BIN)/python -m bench.run $(if $(filter 1,$(BENCH_QUICK)),--quick,--repeats $(BENCH_REPEATS) \
	  --scales "$(BENCH_SCALES)" --sweep $(BENCH_SWEEP))

# --- Deployment (src/serving/; docs/deployment.md) ---
# make serve [HOST=0.0.0.0 PORT=8000]: the HTTP service on the verified model.
# make predict INPUT=rows.csv|rows.parquet OUTPUT=predictions.csv|predictions.parquet [RAW=1]: batch predictions.
# Both refuse a model that does not match dvc.lock, its manifest or the environment;
# ALLOW_VERSION_MISMATCH=1 loads it on other library versions anyway (predictions may differ).
HOST ?= 127.0.0.1
PORT ?= 8000
ALLOW_MISMATCH_FLAG = $(if $(filter 1,$(ALLOW_VERSION_MISMATCH)),--allow-version-mismatch)
# RAW=1: INPUT holds entities as gathered (snapshot rows); the adapter's own derivation makes their features.
RAW_FLAG = $(if $(filter 1,$(RAW)),--raw)
# make image [IMAGE_BASE=python:3.11.7-slim-bookworm]: the serving image, built
# offline from a hash-checked wheelhouse on a local Debian base (cached in
# ~/.cache/model-service/), every layer dated at the commit: one commit, one
# digest (src/tools/image.py). Needs podman, buildah and debootstrap.
.PHONY: serve predict image
## the serving image (podman, offline, reproducible: one commit, one digest) [IMAGE_BASE=..]
image: $(STAMP)
	$(BIN)/python -m src.tools.image build $(if $(IMAGE_BASE),--base $(IMAGE_BASE))

## serve the verified model over HTTP [HOST=.. PORT=..]
serve: $(STAMP)
	$(BIN)/python -m src.serving.serve --host $(HOST) --port $(PORT) $(ALLOW_MISMATCH_FLAG)

## batch predictions with the verified model: INPUT=.. OUTPUT=..
predict: $(STAMP)
	$(if $(INPUT),,$(error INPUT is missing: make predict INPUT=rows.csv|rows.parquet OUTPUT=predictions.csv|predictions.parquet))
	$(if $(OUTPUT),,$(error OUTPUT is missing: make predict INPUT=rows.csv|rows.parquet OUTPUT=predictions.csv|predictions.parquet))
	$(BIN)/python -m src.serving.predict --input $(INPUT) --output $(OUTPUT) $(RAW_FLAG) $(ALLOW_MISMATCH_FLAG)
