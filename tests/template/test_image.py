"""The serving image itself: built from a clone of HEAD, run, and built again to the same digest.

Built with podman (vfs storage, chroot isolation) on a local Debian base and
run with `buildah run` (src/tools/image.py says why). One build and one
rebuild per test session; `.ci/run` installs the tools, and under CI=true a
missing tool fails rather than skips.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from src.pipeline import config
from src.tools import image
from tests.template.frames import ADAPTER
from tests.template.test_serve import as_json_rows, raw_test_rows

pytestmark = pytest.mark.long

TAG = "localhost/model-service-test"
# What the image must not hold: the repository's tests, tools and adapter, and
# the development packages (DVC, its plugins, test and lint tools).
FORBIDDEN_PACKAGES = (
    "dvc",
    "dvclive",
    "dvc_data",
    "dvc_objects",
    "pytest",
    "_pytest",
    "hypothesis",
    "ruff",
    "uv",
    "xdist",
    "schemathesis",
    "tests",
)
FORBIDDEN_APP = ("tests", "src/tools", "bench", "data")
CHUNK = 5000  # the service's default --max-rows
RAW_CHUNK = 1000  # raw rows are wider: under the default --max-bytes


def _require_tools() -> None:
    missing = image.missing_tools()
    if missing:
        message = (
            f"{', '.join(missing)} not installed, so the image cannot be built here: "
            f"apt-get install {' '.join(missing)} (.ci/run does)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def built(reproduced: Path) -> dict:
    """The image of the reproduced clone: its ID, the timings of each step."""
    _require_tools()
    timings: dict[str, float] = {}
    digest = image.build(TAG, root=reproduced, timings=timings)
    print(f"\nimage: {digest} {image.image_size(TAG) / 1e6:.0f} MB; {timings}")
    return {"id": digest, "timings": timings}


@pytest.fixture(scope="module")
def box(built: dict) -> Iterator[str]:
    """A working container of the image."""
    name = image.container(TAG)
    yield name
    image.remove(name)


def in_box(box: str, *command: str) -> str:
    result = subprocess.run(image.run_command(box, list(command)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command} in the image failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service(box: str) -> Iterator[str]:
    """The image's service (its CMD's module, as its user) on a loopback port of the host."""
    port = free_port()
    process = subprocess.Popen(
        image.run_command(box, ["python", "-m", "src.serving.serve", "--host", "127.0.0.1", "--port", str(port)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the service exited:\n{process.stdout.read().decode()}"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("the image's service did not answer /health within 120 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_image_runs_as_its_non_root_user(box):
    assert in_box(box, "id", "-u").strip() == "10001"
    config_user = image._run(
        ["podman", *image.STORAGE, "image", "inspect", "--format", "{{.Config.User}}", TAG], "inspect"
    ).stdout.strip()
    assert config_user == "app"


def test_the_images_service_answers_the_evaluate_stages_predictions(service, reproduced):
    health = httpx.get(service + "/health", timeout=10).json()
    manifest = json.loads((reproduced / config.MANIFEST.relative_to(config.ROOT)).read_text())
    assert health == {"status": "ok", "model_sha256": manifest["model_sha256"]}
    rows = pd.read_parquet(reproduced / config.TEST_FEATURES.relative_to(config.ROOT))
    expected = pd.read_parquet(reproduced / config.PREDICTIONS.relative_to(config.ROOT))
    features = rows[[manifest["id"], *manifest["features"]]]
    got = []
    with httpx.Client(base_url=service, timeout=300) as client:
        for start in range(0, len(features), CHUNK):
            chunk = features.iloc[start : start + CHUNK]
            body = chunk.astype(object).where(chunk.notna(), None).to_dict(orient="records")
            response = client.post("/predict", json={"rows": body})
            assert response.status_code == 200, response.text[:500]
            got.extend(response.json()["predictions"])
    assert len(got) == len(expected)
    assert [p[manifest["id"]] for p in got] == expected[manifest["id"]].tolist()
    assert [p["label"] for p in got] == expected["label"].tolist()
    classes = [str(c) for c in manifest["classes"]]
    if "probability" in expected.columns:  # binary: the positive class's probability, every bit
        assert [p["probability"] for p in got] == expected["probability"].tolist()
    else:
        for name in classes:
            assert [p["probabilities"][name] for p in got] == expected[f"probability_{name}"].tolist()


def test_the_images_service_derives_raw_test_rows_to_the_evaluate_stages_predictions(service, reproduced):
    # /predict/raw in the image: the adapter's serving side (its package's __init__.py) is there,
    # and derives each test entity as gathered to the features featurize wrote.
    if ADAPTER.inputs is None:
        pytest.skip("the adapter declares no INPUTS")
    info = httpx.get(service + "/info", timeout=10).json()
    assert info["raw_contract"] is not None, "the image's service does not serve raw rows"
    rows = raw_test_rows(reproduced)[[ADAPTER.id, *ADAPTER.inputs.schema.names]]
    expected = pd.read_parquet(reproduced / config.PREDICTIONS.relative_to(config.ROOT))
    got = []
    with httpx.Client(base_url=service, timeout=300) as client:
        for start in range(0, len(rows), RAW_CHUNK):
            response = client.post("/predict/raw", json={"rows": as_json_rows(rows.iloc[start : start + RAW_CHUNK])})
            assert response.status_code == 200, response.text[:500]
            got.extend(response.json()["predictions"])
    served = pd.DataFrame(got)
    assert served[ADAPTER.id].tolist() == expected[ADAPTER.id].tolist()
    assert served["label"].tolist() == expected["label"].tolist()
    if "probability" in expected.columns:
        assert served["probability"].tolist() == expected["probability"].tolist()


def test_the_image_holds_no_tests_tools_dvc_or_pytest(box):
    listing = json.loads(
        in_box(
            box,
            "python",
            "-c",
            (
                "import json, os, site; print(json.dumps({p: sorted(os.listdir(p)) for p in site.getsitepackages() "
                "if os.path.isdir(p)}))"
            ),
        )
    )
    names = {name for entries in listing.values() for name in entries}
    assert names, listing
    packages = {name.split("-")[0].lower() for name in names}
    assert "sklearn" in packages and "fastapi" in packages  # the listing is the right one
    assert not packages & set(FORBIDDEN_PACKAGES), sorted(packages & set(FORBIDDEN_PACKAGES))
    app = in_box(box, "sh", "-c", "cd /app && find . -maxdepth 2 | sort").split()
    assert not [path for path in app if path.removeprefix("./").startswith(FORBIDDEN_APP)], app
    # The adapters' serving side is there, their source side (tables, query, SQLAlchemy) is not.
    adapters = in_box(box, "sh", "-c", "cd /app/src/datasets && find . -name '*.py' | sort").split()
    assert f"./{ADAPTER.name}/__init__.py" in adapters, adapters
    assert not [path for path in adapters if path.endswith("/source.py")], adapters


def test_two_builds_of_one_commit_are_one_image(built, reproduced, tmp_path):
    # Every layer again (--no-cache): the same bytes, so the same digest.
    timings: dict[str, float] = {}
    again = image.build(TAG + "-again", root=reproduced, timings=timings, no_cache=True)
    print(f"\nimage: first {built['id']}, again {again}; {timings}")
    if again != built["id"]:
        differ = image.differing_files(
            image.save(TAG, tmp_path / "first"), image.save(TAG + "-again", tmp_path / "again")
        )
        pytest.fail(
            f"two builds of one commit differ: {built['id']} and {again}; differing files:\n  "
            + "\n  ".join(differ[:50])
        )
    assert image.layers(TAG) == image.layers(TAG + "-again")
