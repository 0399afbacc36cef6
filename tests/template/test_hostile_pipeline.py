"""Hostile input and faults on the pipeline side: params, source URLs, killed runs, a full disk."""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from src.pipeline import config, files
from src.pipeline.gather import gather
from src.pipeline.params import ParamsError, load_params, validate
from src.pipeline.source.moments import as_of_timestamp
from src.pipeline.source.readers import arrow_connection, open_source
from src.pipeline.source.url import SourceError, parse_url, redacted
from tests.template.frames import ADAPTER, PARAMS

PASSWORD = "hunter2"


@pytest.fixture
def raw() -> dict:
    return copy.deepcopy(yaml.safe_load(config.PARAMS_FILE.read_text(encoding="utf-8")))


def _refused(raw: dict) -> str:
    with pytest.raises(ParamsError) as error:
        validate(raw)
    return str(error.value)


# --- as_of -------------------------------------------------------------------


def test_a_future_as_of_is_refused_and_says_why(raw):
    raw["gather"]["as_of"] = "2999-12-31"
    message = _refused(raw)
    assert "gather.as_of" in message
    assert "in the future" in message
    assert "nothing can still be recorded at or before it" in message


def test_a_future_timestamp_is_refused_too(raw):
    raw["gather"]["as_of"] = "2999-12-31T00:00:00Z"
    assert "in the future" in _refused(raw)


def test_a_past_as_of_is_accepted(raw):
    raw["gather"]["as_of"] = "2000-01-01T00:00:00Z"
    assert validate(raw).gather.as_of == "2000-01-01T00:00:00Z"


def test_an_unquoted_yaml_date_is_told_to_be_quoted(tmp_path):
    text = config.PARAMS_FILE.read_text(encoding="utf-8")
    quoted = f"as_of: '{PARAMS.gather.as_of}'"
    assert quoted in text, "the committed params.yaml quotes its as_of"
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(quoted, "as_of: 2013-06-30"), encoding="utf-8")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["gather"]["as_of"].__class__.__name__ == "date"
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert (
        "gather.as_of: quote the date ('2013-06-30'): YAML reads an unquoted date as a date object, "
        "which DVC cannot record"
    ) in str(error.value)
    assert "valid string" not in str(error.value)


@pytest.mark.parametrize(
    "typed",
    ["2013-06-30", "2013-06-30T12:00:00", "2013-06-30T12:00:00Z", "2013-06-30 12:00:00+02:00", "2013-06-30t12:00:00.5"],
)
def test_the_fix_suggested_for_an_unquoted_date_or_timestamp_is_itself_accepted(tmp_path, typed):
    text = config.PARAMS_FILE.read_text(encoding="utf-8")
    quoted = f"as_of: '{PARAMS.gather.as_of}'"
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(quoted, f"as_of: {typed}"), encoding="utf-8")
    with pytest.raises(ParamsError) as error:
        load_params(path)
    suggested = re.search(r"gather\.as_of: quote the (?:date|timestamp) \('([^']+)'\)", str(error.value))
    assert suggested, str(error.value)
    # Following the advice: the value quoted as suggested is valid, and means the moment typed.
    path.write_text(text.replace(quoted, f"as_of: '{suggested[1]}'"), encoding="utf-8")
    accepted = load_params(path).gather.as_of
    assert accepted == suggested[1]
    if "T" in typed.upper() or " " in typed:
        assert "no time zone" in str(error.value) or typed.endswith(("Z", "+02:00"))
        expected = {"2013-06-30 12:00:00+02:00": "2013-06-30 10:00:00"}.get(typed, "2013-06-30 12:00:00")
        assert as_of_timestamp(accepted) == expected


@pytest.mark.slow
def test_the_gather_stage_refuses_a_future_as_of_without_a_traceback(tmp_path):
    # The stage's real entry point, reading a copy of params.yaml; SOURCE_URL points at
    # nothing, so even a stage that let the params through could not write a snapshot.
    text = config.PARAMS_FILE.read_text(encoding="utf-8")
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(f"as_of: '{PARAMS.gather.as_of}'", "as_of: '2999-12-31'"), encoding="utf-8")
    code = (
        "import runpy; from pathlib import Path; from src.pipeline import params\n"
        f"params.load_params.__defaults__ = (Path({str(path)!r}),)\n"
        "runpy.run_module('src.pipeline.gather', run_name='__main__')\n"
    )
    env = {**os.environ, config.SOURCE_URL_ENV: f"sqlite:///{tmp_path / 'absent.sqlite'}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=config.ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("gather: error: params.yaml") or "gather.as_of" in result.stderr
    assert "gather.as_of" in result.stderr and "in the future" in result.stderr
    assert "Traceback" not in result.stderr


# --- source URLs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"sqlite://user:{PASSWORD}@/x",
        f"sqlite://user:{PASSWORD}@/",
        f"postgresql://u:pw@h/db?password={PASSWORD}",
        f"postgresql://u@h/db?sslpassword={PASSWORD}",
        "postgresql://u:hun%40ter2@h/db",
        "postgresql://u@h/db?password=hun%40ter2",
        f"nosuchdialect://u:{PASSWORD}@h/db",
        f"not a url with {PASSWORD}",
    ],
)
@pytest.mark.parametrize("arrow_native", [None, False])
def test_no_source_url_error_echoes_a_password(url, arrow_native, tmp_path):
    # The real read: parse, connect (a PostgreSQL driver is installed, so it
    # tries the host and fails), and stop with a message that names the problem.
    with pytest.raises(SourceError) as error:
        gather(ADAPTER, url, "2020-01-01 00:00:00", 10, tmp_path / "x.parquet", arrow_native=arrow_native)
    message = str(error.value)
    for secret in (PASSWORD, "hun%40ter2", "hun@ter2"):
        assert secret not in message, message
    assert any(
        problem in message
        for problem in (
            "not a database URL",
            "not found",
            "cannot connect",
            "cannot use source URL",
            "cannot read the source",
        )
    ), message
    # No chained exception that a traceback would print with the URL in it.
    assert error.value.__cause__ is None
    assert error.value.__context__ is None or error.value.__suppress_context__
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    "url, forms",
    [
        (f"postgresql://u@h/db?password={PASSWORD}", [PASSWORD]),
        (f"postgresql://u@h/db?Password={PASSWORD}&sslmode=require", [PASSWORD]),
        (f"postgresql://u:{PASSWORD}@h/db", [PASSWORD]),
        ("postgresql://u@h/db?password=hun%40ter%202", ["hun@ter 2", "hun%40ter%202", "hun%40ter+2"]),
        ("postgresql://u:hun%40ter%202@h/db", ["hun@ter 2", "hun%40ter%202", "hun%40ter+2"]),
    ],
)
def test_redaction_hides_every_password_form_a_driver_may_echo(url, forms):
    parsed = sa.engine.make_url(url)
    echoed = [url, parsed.render_as_string(hide_password=False), *forms]
    message = redacted("driver said: " + " | ".join(echoed), url)
    assert message.startswith("driver said: ")
    assert not any(form in message for form in forms), message


def test_redaction_keeps_a_url_without_a_password():
    url = "sqlite:///no/such/folder/history.sqlite"
    assert redacted(f"cannot write to the source {url}", url) == f"cannot write to the source {url}"


def test_a_url_that_does_not_parse_names_the_environment_variable():
    with pytest.raises(SourceError) as error:
        open_source(parse_url("not a url"))
    assert config.SOURCE_URL_ENV in str(error.value)


def test_a_missing_sqlite_source_is_named(tmp_path):
    with pytest.raises(SourceError, match="source database not found"):
        open_source(parse_url(f"sqlite:///{tmp_path / 'absent.sqlite'}"))
    assert not (tmp_path / "absent.sqlite").exists()


def _entity_table() -> sa.Table:
    return ADAPTER.source_tables.tables[ADAPTER.entity_table]


def _unordered_ids(scramble: bool, arrow_native: bool) -> list:
    query = f"SELECT {ADAPTER.id} FROM {_entity_table().name}"
    if arrow_native:
        with (
            arrow_connection(parse_url(config.source_url()), scramble=scramble) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(query)
            return cursor.fetch_arrow_table().column(0).to_pylist()
    engine = open_source(parse_url(config.source_url()), scramble=scramble)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query)).scalars().all()
    finally:
        engine.dispose()


@pytest.mark.long
@pytest.mark.parametrize("arrow_native", [True, False])
def test_scramble_reverses_an_unordered_select_on_the_real_source(arrow_native):
    # Both of gather's read paths. `make test` builds the source before the
    # suite runs: a missing one is a failure, not a skip.
    plain = _unordered_ids(scramble=False, arrow_native=arrow_native)
    scrambled = _unordered_ids(scramble=True, arrow_native=arrow_native)
    assert len(plain) > 1 and plain != scrambled
    assert scrambled == plain[::-1]


# --- killed runs and a full disk ---------------------------------------------


def test_a_killed_writes_temporary_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "metrics.json"
    # What a kill -9 mid-write leaves: real mkstemp names, as atomic_path makes them.
    stale = [tmp_path / f".metrics.json.{suffix}.tmp" for suffix in ("a1b2c3d4", "zz_9x8y7")]
    for path in stale:
        path.write_text("half a file")
    others = [
        tmp_path / ".metrics.json.extra.abc12345.tmp",  # a target named metrics.json.extra
        tmp_path / ".other.json.a1b2c3d4.tmp",
        tmp_path / "metrics.json.a1b2c3d4.tmp",
        tmp_path / ".metrics.json.a1b2c3d4.tmp.keep",
    ]
    for path in others:
        path.write_text("not ours")
    files.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == sorted(
        p.name for p in others if p.name.endswith(".tmp")
    )


@pytest.mark.slow
def test_a_run_killed_with_sigkill_leaves_nothing_after_the_next_write(tmp_path):
    target = tmp_path / "out.json"
    code = (
        "import os, signal, sys; from pathlib import Path; from src.pipeline import files\n"
        f"with files.atomic_open(Path({str(target)!r})) as handle:\n"
        "    handle.write('partial'); handle.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=config.ROOT, capture_output=True, text=True)
    assert result.returncode == -9
    left = list(tmp_path.glob(".out.json.*.tmp"))
    assert len(left) == 1 and not target.exists()
    files.write_json(target, [1])
    assert os.listdir(tmp_path) == ["out.json"]


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_a_json_write_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    monkeypatch.setattr(files.json, "dump", _disk_full)
    with pytest.raises(files.DiskFullError) as error:
        files.write_json(target, {"a": 1})
    message = str(error.value)
    assert str(target) in message and "no space left on device" in message
    assert error.value.errno == errno.ENOSPC
    assert isinstance(error.value, ValueError), "stage mains print ValueErrors without a traceback"
    assert os.listdir(tmp_path) == []


def test_a_full_disk_during_a_parquet_write_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "snapshot.parquet"
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _disk_full)
    schema = pa.schema([("id", pa.int64())])
    with pytest.raises(files.DiskFullError, match="no space left on device") as error:
        files.write_parquet(target, [pa.table({"id": [1, 2]}, schema=schema)], schema)
    assert str(target) in str(error.value)
    assert os.listdir(tmp_path) == []


def test_other_os_errors_pass_through_unchanged(tmp_path, monkeypatch):
    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(files.json, "dump", denied)
    with pytest.raises(PermissionError) as error:
        files.write_json(tmp_path / "x.json", {})
    assert not isinstance(error.value, files.DiskFullError)
