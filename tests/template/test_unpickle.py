"""Models are unpickled through an allowlist of the globals this pipeline's models are made of.

dvc.lock is the root of trust: a pickle, its manifest and both MD5s in the lock
rewritten together pass every hash check (only `git status` shows it). So the
unpickler itself resolves only artifact.ALLOWED_GLOBALS, exact (module, name)
pairs derived from every model family the params schema offers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
import pickletools
import typing

import pytest

from src.pipeline import artifact, params
from src.pipeline.model import build_pipeline, normalise_threads
from tests.template import frames
from tests.template.test_artifact import write_lock

BASE = list(typing.get_args(params.BaseModelName))
# (family, stacking's base estimators): every name the schema offers, and every
# combination of base estimators a stacking model may have.
FAMILIES = [(name, None) for name in typing.get_args(params.ModelName) if name != "stacking"] + [
    ("stacking", list(combo)) for size in range(2, len(BASE) + 1) for combo in itertools.combinations(BASE, size)
]
# 0 classes: the family's regressor (a float target, frames.regression()). Each single family once
# more with feature selection on (train.feature_selection, classification only), which wraps the pipeline.
# A stacking pickle names the stacker's globals and its bases': every combination at 2 classes, and
# at 3 classes and as a regressor the one with every base (what a class count or a regression changes
# is in the bases, each of which also stands alone there).
CASES = [
    (family, combo, n_classes, False)
    for family, combo in FAMILIES
    for n_classes in (2, 3, 0)
    if combo is None or n_classes == 2 or len(combo) == len(BASE)
] + [(family, combo, n_classes, True) for family, combo in FAMILIES if combo is None for n_classes in (2, 3)]
CASE_IDS = [
    f"{family}{'-' + '+'.join(combo) if combo else ''}-{f'{n}classes' if n else 'regression'}"
    f"{'-selected' if selected else ''}"
    for family, combo, n, selected in CASES
]


def globals_named(payload: bytes) -> set[tuple[str, str]]:
    """The (module, name) pairs a pickle's GLOBAL, INST and STACK_GLOBAL opcodes name, without loading it."""
    found: set[tuple[str, str]] = set()
    stack: list = []  # the strings most recently pushed, enough for STACK_GLOBAL
    memo: dict[int, object] = {}
    for opcode, arg, _ in pickletools.genops(payload):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            module, attribute = arg.split(" ", 1)
            found.add((module, attribute))
            stack.append(None)
        elif name == "STACK_GLOBAL":
            found.add((stack[-2], stack[-1]))
            stack.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            stack.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
        else:
            stack.append(None)
    return found


def fitted(family: str, combo: list[str] | None, n_classes: int, selected: bool = False):
    adapter = frames.regression() if n_classes == 0 else frames.ADAPTER
    chosen = frames.small_params(family, n_classes, adapter)
    if selected:
        selection = chosen.train.feature_selection.model_copy(update={"method": "permutation", "keep": 2})
        chosen = chosen.model_copy(update={"train": chosen.train.model_copy(update={"feature_selection": selection})})
    if combo:
        stacking = chosen.train.stacking.model_copy(update={"estimators": combo})
        chosen = chosen.model_copy(update={"train": chosen.train.model_copy(update={"stacking": stacking})})
    frame = frames.features(120, n_classes, 0, adapter)
    pipeline = build_pipeline(chosen.train, chosen.categories, adapter.numeric, chosen.seed, task=adapter.task)
    pipeline.fit(frame[list(frames.ADAPTER.features)], frame[frames.ADAPTER.target])
    return normalise_threads(pipeline), frame[list(frames.ADAPTER.features)]


@pytest.fixture(scope="module")
def payloads() -> dict[str, tuple[bytes, object]]:
    """Every family fitted once on tiny frames, pickled as the train stage pickles it."""
    result = {}
    for case_id, (family, combo, n_classes, selected) in zip(CASE_IDS, CASES, strict=True):
        model, X = fitted(family, combo, n_classes, selected)
        result[case_id] = (pickle.dumps(model, protocol=artifact.PICKLE_PROTOCOL), model, X)
    return result


def test_the_allowlist_is_exact_sorted_pairs():
    assert list(artifact.ALLOWED_GLOBALS) == sorted(set(artifact.ALLOWED_GLOBALS))
    assert all(
        isinstance(module, str) and isinstance(name, str) and name and "*" not in module + name
        for module, name in artifact.ALLOWED_GLOBALS
    )


@pytest.mark.slow
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_every_family_in_the_schema_names_only_allowed_globals_and_round_trips(payloads, case_id, tmp_path):
    # A family added to params.ModelName (or a new base estimator) gets a case
    # here: it fails, naming the missing pairs, until ALLOWED_GLOBALS has them.
    payload, model, X = payloads[case_id]
    missing = globals_named(payload) - set(artifact.ALLOWED_GLOBALS)
    assert not missing, f"{case_id} names globals that ALLOWED_GLOBALS lacks: {sorted(missing)}"
    # Loaded as the pipeline loads it (hash-checked against manifest and lock).
    model_path, manifest_path = tmp_path / "model.pkl", tmp_path / "manifest.json"
    model_path.write_bytes(payload)
    manifest_path.write_text(
        json.dumps(
            {
                "model_sha256": hashlib.sha256(payload).hexdigest(),
                "versions": artifact.runtime_versions(),
                "features": [],
            }
        )
    )
    lock = write_lock(tmp_path, model=model_path, manifest=manifest_path)
    loaded, _ = artifact.load_model(model_path, manifest_path, lock_path=lock)
    # Load and re-dump is not byte-identical (REPRODUCIBILITY.md): compare behaviour.
    if case_id.endswith("regression"):
        assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
        return
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
    assert list(loaded.classes_) == list(model.classes_)


@pytest.mark.slow
def test_every_allowed_global_is_used_by_some_family(payloads):
    # The list stays the derived one: an entry no family needs is only attack surface.
    used = set().union(*(globals_named(payload) for payload, _, _ in payloads.values()))
    assert set(artifact.ALLOWED_GLOBALS) - used == set()


class _RunsCode:
    """A pickle that runs a command when loaded."""

    def __init__(self, witness):
        self.witness = witness

    def __reduce__(self):
        return os.system, (f"touch {self.witness}",)


def _forge(tmp_path, payload: bytes):
    """A model, a manifest and a dvc.lock rewritten together to vouch for `payload`."""
    (tmp_path / "models").mkdir()
    model_path, manifest_path, manifest = frames.save(tmp_path / "models")
    model_path.write_bytes(payload)
    manifest["model_sha256"] = hashlib.sha256(payload).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    return model_path, manifest_path, write_lock(tmp_path, model=model_path, manifest=manifest_path)


def test_a_pickle_forged_with_manifest_and_lock_is_refused_before_its_code_runs(tmp_path):
    witness = tmp_path / "code-ran"
    model_path, manifest_path, lock = _forge(tmp_path, pickle.dumps(_RunsCode(witness), protocol=5))
    with pytest.raises(artifact.ArtifactError) as refused:
        artifact.load_model(model_path, manifest_path, lock_path=lock)
    assert f"{os.system.__module__}.system" in str(refused.value)
    assert "not one of this pipeline's models" in str(refused.value)
    assert str(model_path) in str(refused.value)
    assert not witness.exists(), "the pickle's code ran"


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("functools", "reduce"),
        ("numpy", "load"),
        ("sklearn.pipeline", "os"),
    ],
)
def test_only_exact_pairs_pass_not_their_modules(tmp_path, module, name):
    # A protocol-0 GLOBAL then REDUCE: the call never happens, find_class refuses first.
    witness = tmp_path / "code-ran"
    payload = f"c{module}\n{name}\n(S'open({str(witness)!r}, \"w\")'\ntR.".encode()
    model_path, manifest_path, lock = _forge(tmp_path, payload)
    with pytest.raises(artifact.ArtifactError, match=rf"{module}\.{name}, which is not one of this pipeline"):
        artifact.load_model(model_path, manifest_path, lock_path=lock)
    assert not witness.exists()


def test_a_malformed_pickle_is_an_artifact_error_naming_the_file(tmp_path):
    model_path, manifest_path, lock = _forge(tmp_path, b"\x80\x05not a pickle")
    with pytest.raises(artifact.ArtifactError, match="cannot unpickle .*model.pkl"):
        artifact.load_model(model_path, manifest_path, lock_path=lock)
