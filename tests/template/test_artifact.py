"""The model is unpickled only when its bytes, the lock and the environment match the manifest."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import yaml

from src.pipeline import artifact
from tests.template import frames


@pytest.fixture
def artifacts(tmp_path):
    # A tiny model saved as the train stage saves it, with its manifest.
    (tmp_path / "models").mkdir()
    model, manifest, _ = frames.save(tmp_path / "models")
    return model, manifest


def write_lock(root: Path, **outs: Path) -> Path:
    """A dvc.lock at `root` recording the current MD5 of each output, as a DVC 3 run would."""
    entries = [
        {
            "path": path.relative_to(root).as_posix(),
            "hash": "md5",
            "md5": hashlib.md5(path.read_bytes()).hexdigest(),
            "size": path.stat().st_size,
        }
        for path in outs.values()
    ]
    lock = root / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train": {"cmd": "train", "outs": entries}}}))
    return lock


def test_the_loaded_model_predicts_as_the_trained_one(artifacts, tmp_path):
    # frames.save fitted and saved this very model (fitting is deterministic).
    trained, _, frame = frames.fit()
    X = frame[list(frames.ADAPTER.features)]
    expected = trained.predict_proba(X)
    lock = write_lock(tmp_path, model=artifacts[0], manifest=artifacts[1])
    for lock_path in (None, lock):
        model, manifest = artifact.load_model(*artifacts, lock_path=lock_path)
        assert model.predict_proba(X).tobytes() == expected.tobytes()
        assert list(model.classes_) == list(trained.classes_) == frames.classes(2)
        assert manifest == json.loads(artifacts[1].read_text())


def test_saving_the_same_model_twice_writes_the_same_bytes(tmp_path):
    model, _, _ = frames.fit("random_forest", 3)
    first, second = tmp_path / "a.pkl", tmp_path / "b.pkl"
    assert artifact.save_model(model, first) == artifact.save_model(model, second)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[:2] == bytes([0x80, artifact.PICKLE_PROTOCOL])  # the fixed protocol


def test_tampered_model_is_never_unpickled(artifacts, tmp_path):
    model_path, manifest_path = artifacts
    # A pickle that would create a file if it were ever loaded.
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    model_path.write_bytes(payload)
    with pytest.raises(artifact.ArtifactError, match="does not match the manifest"):
        artifact.load_model(model_path, manifest_path)
    assert not marker.exists()


def test_a_model_and_manifest_forged_together_are_refused_by_the_lock(artifacts, tmp_path):
    model_path, manifest_path = artifacts
    lock = write_lock(tmp_path, model=model_path, manifest=manifest_path)
    marker = tmp_path / "pwned"
    model_path.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    manifest = json.loads(manifest_path.read_text())
    manifest["model_sha256"] = hashlib.sha256(model_path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(artifact.ArtifactError, match=r"refusing to load .*manifest\.json.*dvc\.lock"):
        artifact.load_model(model_path, manifest_path, lock_path=lock)
    assert not marker.exists()


def test_the_lock_must_record_both_files_with_dvc3_hashes(artifacts, tmp_path):
    model_path, manifest_path = artifacts
    only_model = write_lock(tmp_path, model=model_path)
    with pytest.raises(artifact.ArtifactError, match="records no stage output models/manifest.json"):
        artifact.load_model(model_path, manifest_path, lock_path=only_model)
    lock = write_lock(tmp_path, model=model_path, manifest=manifest_path)
    recorded = yaml.safe_load(lock.read_text())
    del recorded["stages"]["train"]["outs"][0]["hash"]  # as DVC 2 wrote it
    lock.write_text(yaml.safe_dump(recorded))
    with pytest.raises(artifact.ArtifactError, match="without a DVC 3 md5 hash"):
        artifact.load_model(model_path, manifest_path, lock_path=lock)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(artifact.ArtifactError, match="cannot vouch"):
        artifact.load_model(model_path, manifest_path, lock_path=write_lock(elsewhere))
    (elsewhere / "dvc.lock").write_text("stages: [not, a, mapping]\n")
    with pytest.raises(artifact.ArtifactError, match="has no stages"):
        artifact.load_model(model_path, manifest_path, lock_path=elsewhere / "dvc.lock")


def test_version_mismatch_is_refused_and_names_packages(artifacts, caplog):
    model_path, manifest_path = artifacts
    manifest = json.loads(manifest_path.read_text())
    manifest["versions"]["scikit-learn"] = "0.24.2"
    manifest["versions"]["python"] = "3.8.0"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(artifact.ArtifactError) as error:
        artifact.load_model(model_path, manifest_path)
    assert "scikit-learn: trained with 0.24.2" in str(error.value)
    assert "python: trained with 3.8.0" in str(error.value)
    assert "numpy" not in str(error.value)  # only what differs
    with caplog.at_level(logging.WARNING):
        model, _ = artifact.load_model(model_path, manifest_path, allow_version_mismatch=True)
    assert "DESPITE VERSION MISMATCH" in caplog.text and hasattr(model, "predict_proba")


def test_bad_manifest_is_named(artifacts, tmp_path):
    model_path, manifest_path = artifacts
    manifest = json.loads(manifest_path.read_text())
    del manifest["model_sha256"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(artifact.ArtifactError, match="lacks 'model_sha256'"):
        artifact.load_model(model_path, manifest_path)
    manifest_path.write_text("[]")
    with pytest.raises(artifact.ArtifactError, match="not a JSON object"):
        artifact.load_model(model_path, manifest_path)
    manifest_path.write_text("{not json")
    with pytest.raises(artifact.ArtifactError, match="not valid JSON"):
        artifact.load_model(model_path, manifest_path)
    with pytest.raises(artifact.ArtifactError, match="not found"):
        artifact.load_model(model_path, tmp_path / "absent.json")


def test_missing_model_is_named(artifacts, tmp_path):
    model_path, manifest_path = artifacts
    model_path.unlink()
    with pytest.raises(artifact.ArtifactError, match=r"model .* not found: run `dvc repro train`"):
        artifact.load_model(model_path, manifest_path)
