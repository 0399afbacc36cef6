"""`make new-adapter NAME=..`: a skeleton that is a valid adapter as written and once filled in, never an overwrite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src.pipeline import config
from src.tools import drop_example, scaffold
from src.tools.clones import working_clone
from tests.conftest import run

PARAMS = config.PARAMS_FILE.relative_to(config.ROOT)
NAME = "scaffolded"  # the clone test's adapter

# The skeleton's placeholders filled in with tests/port/penguins/__init__.py's values, as a forker
# edits them: (file, the skeleton's text, the fork's text); each text occurs once in the skeleton.
PENGUINS_FILL_IN = [
    ("source", 'TABLE = "{name}"', 'TABLE = "penguins"'),
    ("adapter", 'ID = "{name}_id"', 'ID = "penguin_id"'),
    ("adapter", 'TARGET = "label"', 'TARGET = "species"'),
    ("adapter", 'CATEGORICAL = ("category",)', 'CATEGORICAL = ("island", "sex")'),
    (
        "adapter",
        'NUMERIC = ("amount",)',
        'MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")\n'
        'NUMERIC = (*MEASUREMENTS, "year")',
    ),
    (
        "source",
        '    sa.Column("category", sa.Text),\n    sa.Column("amount", sa.Float),\n',
        '    sa.Column("island", sa.Text),\n    sa.Column("sex", sa.Text),\n'
        '    *(sa.Column(name, sa.Float) for name in MEASUREMENTS),\n    sa.Column("year", sa.BigInteger),\n',
    ),
    (
        "adapter",
        '        ("category", pa.string()),\n        ("amount", pa.float64()),\n',
        '        ("island", pa.string()),\n        ("sex", pa.string()),\n'
        '        *((name, pa.float64()) for name in MEASUREMENTS),\n        ("year", pa.int16()),\n',
    ),
    ("adapter", '= {"amount": (0, None)}', "= {name: (0, None) for name in MEASUREMENTS}"),
    ("adapter", '"excluded_no_label"', '"excluded_no_species"'),
    ("source", "    INPUTS,\n", "    INPUTS,\n    MEASUREMENTS,\n"),
    ("source", 'title="{name} model"', 'title="Penguin species model"'),
    ("source", 'entity="{name} rows"', 'entity="penguins"'),
    (
        "tests",
        '            TARGET: ["yes", None, "no"],\n            "category": ["a", "b", None],\n'
        '            "amount": [2.5, 1.0, 0.0],\n',
        '            TARGET: ["Gentoo", None, "Adelie"],\n            "island": ["Biscoe", "Dream", None],\n'
        '            "sex": ["male", None, "female"],\n'
        "            **{\n                name: [2.5, 1.0, 0.0]\n"
        '                for name in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")\n'
        "            },\n"
        '            "year": [2007, 2008, 2009],\n',
    ),
    ("tests", 'rows[TARGET].tolist() == ["no", "yes"]', 'rows[TARGET].tolist() == ["Adelie", "Gentoo"]'),
    ("tests", 'rows["amount"].tolist()', 'rows["body_mass_g"].tolist()'),
    ("tests", '"excluded_no_label"', '"excluded_no_species"'),
]


def fill_in_penguins(root: Path, name: str = "penguins") -> None:
    """Replace the placeholders of `new-adapter NAME=<name>`'s files in `root` with the penguins port's values.

    The table stays `penguins` whatever the name: the port's ingest command and query name it.
    """
    paths = {
        "adapter": root / "src" / "datasets" / name / "__init__.py",
        "source": root / "src" / "datasets" / name / "source.py",
        "tests": root / "tests" / name / f"test_{name}_adapter.py",
    }
    texts = {key: path.read_text(encoding="utf-8") for key, path in paths.items()}
    for key, old, new in PENGUINS_FILL_IN:
        old = old.replace("{name}", name)
        assert texts[key].count(old) == 1, f"the skeleton's {key} file no longer holds {old!r} once"
        texts[key] = texts[key].replace(old, new)
    for key, path in paths.items():
        path.write_text(texts[key], encoding="utf-8")


def _project(tmp_path: Path) -> Path:
    """A folder with this checkout's params.yaml: all the scaffold reads."""
    root = tmp_path / "project"
    root.mkdir()
    (root / PARAMS).write_text(config.PARAMS_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Churn", "not a lower-case Python package name"),
        ("my-data", "not a lower-case Python package name"),
        ("2020", "not a lower-case Python package name"),
        ("class", "not a lower-case Python package name"),
        ("", "not a lower-case Python package name"),
        ("template", "reserved"),
        ("port", "reserved"),
    ],
)
def test_a_bad_name_is_refused_with_one_line(tmp_path, name, says):
    root = _project(tmp_path)
    with pytest.raises(scaffold.ScaffoldError, match=says) as refused:
        scaffold.scaffold(name, root)
    assert "\n" not in str(refused.value)
    assert sorted(path.name for path in root.iterdir()) == ["params.yaml"]


def test_the_example_adapters_name_is_reserved_while_it_is_there(tmp_path):
    root = _project(tmp_path)
    marker = root / "src" / "datasets" / "demo" / drop_example.EXAMPLE_MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text("the example\n", encoding="utf-8")
    with pytest.raises(scaffold.ScaffoldError, match="NAME='demo' is reserved by the template"):
        scaffold.scaffold("demo", root)
    assert drop_example.example_name(root) == "demo"
    marker.unlink()  # dropped: the name is free, and nothing else claims to be the example
    assert drop_example.example_name(root) is None


def test_it_never_overwrites(tmp_path):
    root = _project(tmp_path)
    scaffold.scaffold("churn", root)
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    with pytest.raises(scaffold.ScaffoldError, match="src/datasets/churn already exists; new-adapter never "):
        scaffold.scaffold("churn", root)
    (root / "tests" / "other").mkdir()
    with pytest.raises(scaffold.ScaffoldError, match="tests/other already exists"):
        scaffold.scaffold("other", root)
    assert not (root / "src" / "datasets" / "other").exists()
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == before


def test_params_point_at_the_new_adapter_and_keep_every_comment(tmp_path):
    root = _project(tmp_path)
    written = scaffold.scaffold("churn", root)
    assert [str(path) for path in written] == [
        "src/datasets/churn/__init__.py",
        "src/datasets/churn/source.py",
        "tests/churn/test_churn_adapter.py",
        "params.yaml",
    ]
    before, after = config.PARAMS_FILE.read_text(encoding="utf-8"), (root / PARAMS).read_text(encoding="utf-8")
    params = yaml.safe_load(after)
    assert (params["dataset"], params["categories"], params["classes"]) == ({"adapter": "churn"}, {}, [])
    untouched = {
        key: value for key, value in yaml.safe_load(before).items() if key not in ("dataset", "categories", "classes")
    }
    assert {key: params[key] for key in untouched} == untouched
    # Every comment is kept but those inside the old dataset section (its own keys'), and the blank line too.
    comments = lambda text: [line for line in text.splitlines() if line.lstrip().startswith("#")]  # noqa: E731
    old_section = re.search(r"^dataset:\n(?:  .*\n)+", before, re.MULTILINE).group(0)
    assert comments(after) == [line for line in comments(before) if line not in comments(old_section)]
    assert "  adapter: churn\n\ngather:\n" in after


@pytest.mark.slow  # a clone and two pytest runs in it: about 40 s
def test_the_skeleton_as_written_and_filled_in_passes_check_params_and_its_tests(tmp_path):
    """In a clone of HEAD: new-adapter, check_params and the new tests; then filled in with the penguins, again.

    Under a name of its own, so that it runs in a fork named penguins too.
    """
    clone = working_clone(tmp_path / "clone", venv=config.VENV, source_dir=None)
    if not (clone / "src" / "tools" / "scaffold.py").is_file():
        pytest.fail("HEAD has no src/tools/scaffold.py: commit it first (this test works in a clone of HEAD)")
    check = [sys.executable, "-m", "src.pipeline.check_params", "--check"]
    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/{NAME}"]
    created = run([sys.executable, "-m", "src.tools.scaffold", NAME], cwd=clone)
    assert f"new-adapter: wrote src/datasets/{NAME}/__init__.py" in created.stdout
    # As `make lint` and the pre-commit hook check them: formatted as ruff format writes them.
    lint = [
        str(config.VENV / "bin" / "ruff"),
        "format",
        "--check",
        "--no-cache",
        f"src/datasets/{NAME}",
        f"tests/{NAME}",
    ]
    run(lint, cwd=clone)
    run(check, cwd=clone)
    run(tests, cwd=clone)
    assert run([sys.executable, "-m", "src.tools.scaffold", NAME], cwd=clone, check=False).stderr == (
        f"new-adapter: error: src/datasets/{NAME} already exists; new-adapter never overwrites: choose another "
        "NAME or remove it first\n"
    )

    fill_in_penguins(clone, NAME)
    run(lint, cwd=clone)
    run(check, cwd=clone)
    run(tests, cwd=clone)
    # The filled-in skeleton declares what the port's hand-written adapter does.
    probe = (
        f"from src.datasets.{NAME} import ADAPTER as filled; from tests.port.penguins import ADAPTER as port\n"
        "for field in ('id', 'target', 'target_type', 'snapshot_query', 'snapshot_schema', 'categorical', "
        "'numeric', 'feature_ranges', 'entity', 'title'):\n"
        "    assert getattr(filled, field) == getattr(port, field), field\n"
        "assert [repr(c.type) for c in filled.source_tables.tables['penguins'].c] == "
        "[repr(c.type) for c in port.source_tables.tables['penguins'].c]\n"
    )
    if (clone / "tests" / "port" / "penguins").is_dir():
        result = subprocess.run([sys.executable, "-c", probe], cwd=clone, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
