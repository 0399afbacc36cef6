"""params.yaml is laid out as DVC writes it, so `dvc exp run -S` and `dvc exp apply` change values only.

`-S` rewrites the whole file through a ruamel.yaml round trip
(dvc.utils.hydra.apply_overrides) in which every list and scalar is replaced
by a plain value: a flow list (`[a, b]`) comes back as a block list, and a
comment that follows a list is dropped with it. A file already in that layout
keeps every other byte, and a diff of a promoted experiment shows only what
it changed.
"""

from __future__ import annotations

import io

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from src.pipeline import config
from src.pipeline.params import update_params
from tests.template.frames import PARAMS

TEXT = config.PARAMS_FILE.read_text(encoding="utf-8")


def dvc_yaml() -> YAML:
    """The round trip of DVC's params writer (dvc.utils.serialize._yaml) and of update_params."""
    yaml = YAML()
    yaml.default_flow_style = False
    return yaml


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), "lines were added or removed"
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def flow_collections(node: object, path: str = "") -> list[str]:
    """Keys of the non-empty lists and mappings written in flow style (`[a, b]`, `{a: 1}`)."""
    found = []
    if isinstance(node, CommentedMap | CommentedSeq):
        if node and node.fa.flow_style():
            found.append(path or "(top)")
        items = node.items() if isinstance(node, CommentedMap) else enumerate(node)
        for key, value in items:
            found += flow_collections(value, f"{path}.{key}" if path else str(key))
    return found


def test_round_trip_with_dvcs_writer_reproduces_the_file():
    yaml = dvc_yaml()
    buffer = io.StringIO()
    yaml.dump(yaml.load(TEXT), buffer)
    assert buffer.getvalue() == TEXT


def test_every_list_is_a_block_list():
    # The round trip above keeps a flow list as it found it; `-S` replaces the
    # list with a plain one, which DVC writes in block style.
    assert flow_collections(dvc_yaml().load(TEXT)) == [], "write these as block lists, one item per line"
    assert flow_collections(dvc_yaml().load("a:\n  b: [1, 2]\n  c:\n  - 1\nd: []\n")) == ["a.b"]


def test_dvc_set_param_reflows_flow_lists_and_drops_comments_after_lists(tmp_path):
    # Why the layout matters: what DVC does to a file that is not in it.
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nlist: [a, b]\nblock:\n- a\n# about next\nnext: 1\n", encoding="utf-8")
    apply_overrides(path, ["seed=1"])
    assert path.read_text(encoding="utf-8") == "seed: 1\nlist:\n- a\n- b\nblock:\n- a\nnext: 1\n"


def test_dvc_set_param_changes_only_the_value(tmp_path):
    # DVC's own `-S` code path, on a copy: every list and scalar is replaced.
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text(TEXT, encoding="utf-8")
    apply_overrides(path, [f"seed={PARAMS.seed}"])
    assert path.read_text(encoding="utf-8") == TEXT, "`dvc exp run -S` with an unchanged value rewrote the file"
    apply_overrides(path, [f"seed={PARAMS.seed + 1}"])
    assert changed_lines(TEXT, path.read_text(encoding="utf-8")) == [
        (f"seed: {PARAMS.seed}", f"seed: {PARAMS.seed + 1}")
    ]


def test_update_params_changes_exactly_one_line(tmp_path):
    # `make categories` and `make data-version` write through update_params.
    path = tmp_path / "params.yaml"
    path.write_text(TEXT, encoding="utf-8")

    def bump(document) -> None:
        document["train"]["impute_strategy"] = "mean"

    assert update_params(path, bump) is True
    assert changed_lines(TEXT, path.read_text(encoding="utf-8")) == [
        (f"  impute_strategy: {PARAMS.train.impute_strategy}", "  impute_strategy: mean")
    ]
