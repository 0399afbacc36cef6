"""`make source`: the tool runs the active adapter's demo builder, or says how else data arrives."""

from __future__ import annotations

import dataclasses

import pytest

from src.pipeline import config
from src.tools import source
from tests.template.frames import ADAPTER, ADAPTER_PARAMS


def _with_builder(monkeypatch, builder) -> None:
    adapter = dataclasses.replace(ADAPTER, build_demo_source=builder)
    monkeypatch.setattr(source, "load_adapter", lambda params: (adapter, ADAPTER_PARAMS))


def test_cli_rejects_bad_scale(capsys):
    for bad in ["0", "-1", "1.5", "many"]:
        with pytest.raises(SystemExit) as exit_info:
            source.main(["--scale", bad])
        assert exit_info.value.code == 2
    assert "--scale" in capsys.readouterr().err


def test_the_adapters_builder_gets_the_output_and_scale(monkeypatch, tmp_path, capsys):
    calls = []

    def builder(output, scale=1):
        calls.append((output, scale))
        return {"things": 1234}

    _with_builder(monkeypatch, builder)
    source.main(["--scale", "3", "--output", str(tmp_path / "demo.sqlite")])
    assert calls == [(tmp_path / "demo.sqlite", 3)]
    assert "things=1,234" in capsys.readouterr().out
    source.main([])
    assert calls[-1] == (config.SOURCE_DB, 1)  # the default: the embedded source that gather reads


def test_an_adapter_without_a_builder_points_to_ingest(monkeypatch):
    _with_builder(monkeypatch, None)
    with pytest.raises(SystemExit) as exit_info:
        source.main([])
    message = str(exit_info.value.code)
    assert "no demo source" in message and "src.tools.ingest" in message and config.SOURCE_URL_ENV in message
