"""Ingest: a plain table becomes the append-only history that gather reads as of a moment.

Generic: tiny frames and a temporary SQLite file, whatever the active adapter.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from src.pipeline import config
from src.pipeline.source.copy import copy_tables
from src.pipeline.source.history import RECORDED_AT, VERSION_ID, HistoryError, history_table, latest_query
from src.pipeline.source.ingest import ingest
from src.pipeline.source.moments import moment_text
from src.tools import ingest as ingest_tool
from src.tools.ingest import read_table
from tests.conftest import run

TABLE, ID = "items", "item_id"
DAY1, DAY2, DAY3 = "2020-01-01", "2020-01-02", "2020-01-03"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite'}"


def frame(ids, colour=None, size=None) -> pd.DataFrame:
    return pd.DataFrame({ID: ids, "colour": colour or ["red"] * len(ids), "size": size or [float(i) for i in ids]})


def versions(url: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return pd.read_sql(sa.text(f"SELECT * FROM {TABLE} ORDER BY {VERSION_ID}"), connection)
    finally:
        engine.dispose()


def as_of(url: str, moment: str) -> pd.DataFrame:
    """The point-in-time read that an adapter's snapshot query is built from."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return pd.read_sql(
                sa.text(latest_query(TABLE, ID, ["colour", "size"])), connection, params={"as_of": moment_text(moment)}
            )
    finally:
        engine.dispose()


def test_new_ids_append_and_the_table_follows_the_source_contract(url):
    first = ingest(frame([2, 1]), url, TABLE, ID, recorded_at=DAY1)
    assert (first.appended, first.unchanged, first.recorded_at) == (2, 0, "2020-01-01 23:59:59")
    second = ingest(frame([1, 2, 3]), url, TABLE, ID, recorded_at=DAY2)
    assert (second.appended, second.unchanged) == (1, 2)
    stored = versions(url)
    # Version ids are unique and follow the id order, whatever the file's row order.
    assert stored[VERSION_ID].tolist() == [1, 2, 3] and stored[ID].tolist() == [1, 2, 3]
    assert stored[RECORDED_AT].tolist() == ["2020-01-01 23:59:59"] * 2 + ["2020-01-02 23:59:59"]
    # The declared history table (what an adapter uses for source_tables) has the same columns.
    declared = history_table(sa.MetaData(), TABLE, ID, sa.Column("colour", sa.Text), sa.Column("size", sa.Float))
    assert sorted(c.name for c in declared.columns) == sorted(stored.columns)


def test_the_same_file_twice_adds_nothing(url, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,colour,size\n1,red,1.5\n2,NA,\n3,blue,7\n")
    assert ingest(read_table(path), url, TABLE, ID, recorded_at=DAY1).appended == 3
    again = ingest(read_table(path), url, TABLE, ID, recorded_at=DAY2)
    assert (again.appended, again.unchanged) == (0, 3)
    assert len(versions(url)) == 3


def test_a_gap_or_a_new_column_order_is_not_a_change(url):
    # A column of whole numbers is read as floats once one cell is missing;
    # the same values must still be the same rows.
    ingest(pd.DataFrame({ID: [1, 2], "colour": ["red", "blue"], "size": [181, 190]}), url, TABLE, ID, recorded_at=DAY1)
    gap = pd.DataFrame({ID: [1, 2, 3], "colour": ["red", "blue", "red"], "size": [181.0, 190.0, None]})
    assert ingest(gap, url, TABLE, ID, recorded_at=DAY2).appended == 1
    reordered = gap[["size", ID, "colour"]]
    assert ingest(reordered, url, TABLE, ID, recorded_at=DAY3).appended == 0


def test_a_changed_row_appends_a_version_and_each_moment_reads_its_own(url):
    ingest(frame([1, 2], colour=["red", "red"]), url, TABLE, ID, recorded_at=DAY1)
    changed = ingest(frame([1, 2], colour=["red", "green"]), url, TABLE, ID, recorded_at=DAY2)
    assert (changed.appended, changed.unchanged) == (1, 1)
    ingest(frame([1, 2], colour=["blue", "green"]), url, TABLE, ID, recorded_at=DAY3)
    assert len(versions(url)) == 4  # nothing updated or deleted

    assert as_of(url, "2019-12-31").empty
    for moment, colours in (
        (DAY1, ["red", "red"]),
        (DAY2, ["red", "green"]),
        (DAY3, ["blue", "green"]),
        ("2020-01-02T12:00:00Z", ["red", "red"]),
    ):
        snapshot = as_of(url, moment)
        assert snapshot[ID].tolist() == [1, 2], moment
        assert snapshot["colour"].tolist() == colours, moment


def test_a_recorded_at_column_stamps_each_row(url):
    rows = frame([1, 2, 3]).assign(**{RECORDED_AT: ["2020-01-03", "2020-01-01T08:00:00Z", "2020-01-02"]})
    result = ingest(rows, url, TABLE, ID, recorded_at_column=RECORDED_AT)
    assert result.appended == 3 and result.recorded_at is None
    stored = versions(url).set_index(ID)[RECORDED_AT]
    assert stored.to_dict() == {1: "2020-01-03 23:59:59", 2: "2020-01-01 08:00:00", 3: "2020-01-02 23:59:59"}
    # The column became the history's own recorded_at, not a data column beside it.
    assert sorted(versions(url).columns) == sorted([VERSION_ID, ID, RECORDED_AT, "row_hash", "colour", "size"])
    assert as_of(url, DAY1)[ID].tolist() == [2]
    other = frame([4]).assign(when=["2020-01-04"])
    assert ingest(other, url, TABLE, ID, recorded_at_column="when").appended == 1
    with pytest.raises(HistoryError, match="not both"):
        ingest(frame([5]), url, TABLE, ID, recorded_at=DAY3, recorded_at_column=RECORDED_AT)
    with pytest.raises(HistoryError, match="no recorded-at column 'missing'"):
        ingest(frame([5]), url, TABLE, ID, recorded_at_column="missing")
    with pytest.raises(HistoryError, match="when: 'yesterday' is neither a date"):
        ingest(frame([5]).assign(when=["yesterday"]), url, TABLE, ID, recorded_at_column="when")


def test_without_a_moment_rows_are_stamped_now_in_utc(url):
    now = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert ingest(frame([1]), url, TABLE, ID, now=now).recorded_at == "2021-03-04 03:06:07"


@pytest.mark.parametrize(
    "rows, expected",
    [
        (frame([1]).drop(columns=ID), "no id column 'item_id'"),
        (frame([1, 2, 1]), r"duplicate ids \[1\]"),
        (frame([1]).assign(**{ID: ["a"]}), "ids must be integers"),
        (frame([1, 2]).assign(**{ID: [1.5, 2.0]}), "ids must be integers"),
        (frame([1, 2]).assign(**{ID: [1, None]}), r"missing ids at rows \[1\]"),
        (frame([1]).assign(version_id=[7]), r"\['version_id'\] are reserved"),
        (frame([1]).assign(row_hash=["x"]), r"\['row_hash'\] are reserved"),
        (frame([1]).assign(recorded_at=[DAY1]), r"\['recorded_at'\] are reserved"),
        (frame([1]).iloc[:0], "no rows"),
    ],
)
def test_a_table_that_cannot_be_a_history_is_refused(url, rows, expected):
    with pytest.raises(HistoryError, match=expected):
        ingest(rows, url, TABLE, ID, recorded_at=DAY1)
    assert not sa.inspect(sa.create_engine(url)).has_table(TABLE)  # nothing written


def test_copy_tables_moves_a_history_unchanged_and_never_overwrites(url, tmp_path):
    ingest(frame([3, 1, 2]), url, TABLE, ID, recorded_at=DAY1)
    ingest(frame([1, 2], colour=["blue", None]), url, TABLE, ID, recorded_at=DAY2)
    declared = sa.MetaData()
    history_table(declared, TABLE, ID, sa.Column("colour", sa.Text), sa.Column("size", sa.Float))
    target = f"sqlite:///{tmp_path / 'copy.sqlite'}"
    assert copy_tables(url, target, declared, batch_rows=2) == {TABLE: 5}  # batches smaller than the table
    pd.testing.assert_frame_equal(versions(target), versions(url))
    assert {index["name"] for index in sa.inspect(sa.create_engine(target)).get_indexes(TABLE)} == {
        f"{TABLE}_by_recorded"
    }
    with pytest.raises(HistoryError, match=r"already has tables \['items'\]: a history is never overwritten"):
        copy_tables(url, target, declared)
    assert len(versions(target)) == 5


def test_a_backdated_version_is_refused(url):
    ingest(frame([1]), url, TABLE, ID, recorded_at=DAY2)
    with pytest.raises(HistoryError, match=r"item_id=2: recorded_at 2020-01-01 23:59:59 is before .*2020-01-02"):
        ingest(frame([1, 2]), url, TABLE, ID, recorded_at=DAY1)
    assert len(versions(url)) == 1  # all or nothing
    # An unchanged row at an old moment adds nothing, so it is no backdating.
    assert ingest(frame([1]), url, TABLE, ID, recorded_at=DAY1).appended == 0


def test_a_bad_moment_or_other_columns_are_refused(url):
    with pytest.raises(HistoryError, match="recorded_at: 'June' is neither a date"):
        ingest(frame([1]), url, TABLE, ID, recorded_at="June")
    with pytest.raises(HistoryError, match="needs a time zone"):
        ingest(frame([1]), url, TABLE, ID, recorded_at="2020-01-01T10:00:00")
    ingest(frame([1]), url, TABLE, ID, recorded_at=DAY1)
    with pytest.raises(
        HistoryError,
        match=r"exists with other columns: the file lacks \['size'\], "
        r"the table lacks \['weight'\]",
    ):
        ingest(frame([1]).drop(columns="size").assign(weight=[3.0]), url, TABLE, ID, recorded_at=DAY2)
    with pytest.raises(HistoryError, match=r"exists with other columns: the table lacks \['weight'\]$"):
        ingest(frame([1]).assign(weight=[3.0]), url, TABLE, ID, recorded_at=DAY2)


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "is empty: no header, no rows"),
        ("item_id,colour\n", None),  # a header alone: read, then refused by ingest as having no rows
        ('item_id,colour\n1,"red\n', "not a well-formed CSV"),
        # pandas alone would shift these values under the wrong header, or pad the row, silently.
        ("item_id,colour\n1,red,extra,more\n2,blue\n", "line 2 has 4 fields, the header 2"),
        ("item_id,colour\n1,red,extra\n2,blue\n", "line 2 has 3 fields, the header 2"),
        ("item_id,colour\n1,red\n2\n", "line 3 has 1 fields, the header 2"),
        ("item_id,colour\n1,red\n2,blue,extra\n", "not a well-formed CSV"),
        ("item_id,colour\n1,caf\xe9\n", "not a well-formed CSV"),
    ],
)
def test_unreadable_files_are_refused(tmp_path, url, content, expected):
    path = tmp_path / "items.csv"
    path.write_bytes(content.encode("latin-1"))
    if expected is None:
        with pytest.raises(HistoryError, match="no rows"):
            ingest(read_table(path), url, TABLE, ID, recorded_at=DAY1)
        return
    with pytest.raises(HistoryError, match=expected):
        read_table(path)


def test_missing_and_unknown_files_are_refused(tmp_path):
    with pytest.raises(HistoryError, match="not found"):
        read_table(tmp_path / "absent.csv")
    (tmp_path / "items.json").write_text("{}")
    with pytest.raises(HistoryError, match="unknown format '.json'"):
        read_table(tmp_path / "items.json")
    (tmp_path / "items.parquet").write_bytes(b"not parquet")
    with pytest.raises(HistoryError, match="not a readable Parquet file"):
        read_table(tmp_path / "items.parquet")


def test_parquet_and_csv_give_the_same_history(tmp_path):
    rows = frame([1, 2], colour=["red", None])
    rows.to_parquet(tmp_path / "items.parquet")
    rows.to_csv(tmp_path / "items.csv", index=False)
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    assert ingest(read_table(tmp_path / "items.parquet"), url, TABLE, ID, recorded_at=DAY1).appended == 2
    assert ingest(read_table(tmp_path / "items.csv"), url, TABLE, ID, recorded_at=DAY2).appended == 0


SECRET = "s3cr3t-Pa55"


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad_url",
    [
        f"postgresql://user:{SECRET}@127.0.0.1:1/db",  # nothing listening
        f"nosuchdatabase://user:{SECRET}@localhost/db",
        f"user:{SECRET}@localhost/db",  # not a URL at all
        f"sqlite://user:{SECRET}@/no/such/folder/history.sqlite",
    ],
)
def test_a_wrong_url_is_named_without_its_password(bad_url):
    with pytest.raises(HistoryError, match="source") as raised:
        ingest(frame([1]), bad_url, TABLE, ID, recorded_at=DAY1)
    assert SECRET not in str(raised.value)


def test_an_unwritable_sqlite_url_is_named(tmp_path):
    missing = tmp_path / "no" / "such" / "folder" / "history.sqlite"
    with pytest.raises(HistoryError, match=f"cannot write to the source sqlite:///{missing}: unable to open"):
        ingest(frame([1]), f"sqlite:///{missing}", TABLE, ID, recorded_at=DAY1)


def test_a_sqlite_url_at_a_directory_says_so(tmp_path):
    # Not "unable to open database file": the folder exists, the file name is what is missing.
    with pytest.raises(HistoryError, match=f"the database {tmp_path} is a directory, not a SQLite file") as raised:
        ingest(frame([1]), f"sqlite:///{tmp_path}", TABLE, ID, recorded_at=DAY1)
    assert "unable to open" not in str(raised.value)


def ingest_cli(*args: str, check: bool = True):
    return run(["python", "-m", "src.tools.ingest", *args], cwd=config.ROOT, check=check)


def ingest_refusal(*args: str) -> str:
    """The one-line exit of `python -m src.tools.ingest ARGS`, run in process (ingest.cli: what the
    command runs). Any exception but that exit fails the test: test_cli_appends_and_reports runs the
    real process."""
    with pytest.raises(SystemExit) as exited:
        ingest_tool.cli(list(args))
    message = exited.value.code
    assert isinstance(message, str), message  # a string exits with status 1, printed to stderr
    assert message.startswith("ingest: error: "), message
    return message


@pytest.mark.slow
def test_cli_appends_and_reports(tmp_path, url):
    path = tmp_path / "items.csv"
    path.write_text("item_id,colour,when\n2,red,2020-01-02\n1,blue,2020-01-01\n")
    first = ingest_cli(str(path), "--table", TABLE, "--id", ID, "--recorded-at", "when", "--url", url)
    assert "ingest: 2 new versions, 0 unchanged rows -> table 'items'" in first.stdout
    assert versions(url).set_index(ID)[RECORDED_AT].to_dict() == {1: "2020-01-01 23:59:59", 2: "2020-01-02 23:59:59"}
    path.write_text("item_id,colour\n1,blue\n2,red\n3,red\n")
    second = ingest_cli(str(path), "--table", TABLE, "--id", ID, "--recorded-at", "2020-01-05", "--url", url)
    assert "ingest: 1 new versions recorded at 2020-01-05 23:59:59, 2 unchanged rows" in second.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--id", "nope"], "no id column 'nope'"),
        (["--id", ID, "--recorded-at", "someday"], "--recorded-at is neither a column of"),
        # Nothing listens on port 1: the server refuses, and the message names it without the password.
        (
            ["--id", ID, "--url", f"postgresql://u:{SECRET}@127.0.0.1:1/db"],
            "cannot write to the source postgresql://u:***@127.0.0.1:1/db: connection failed: connection to server at "
            '"127.0.0.1", port 1 failed: Connection refused',
        ),
        (["--id", ID, "--url", f"nosuchdatabase://u:{SECRET}@127.0.0.1:1/db"], "cannot use the source URL"),
    ],
)
def test_cli_errors_exit_non_zero_with_the_reason(tmp_path, capsys, args, expected):
    path = tmp_path / "items.csv"
    path.write_text("item_id,colour\n1,red\n")
    if "--url" not in args:
        args = [*args, "--url", f"sqlite:///{tmp_path / 'history.sqlite'}"]
    message = ingest_refusal(str(path), "--table", TABLE, *args)
    assert expected in message, message
    printed = capsys.readouterr()
    assert SECRET not in message + printed.out + printed.err


def _gather_reads(url: str, column: str) -> list:
    """`column` of the history as gather turns it into a `pa.timestamp` snapshot column (validate.to_snapshot)."""
    import pyarrow as pa

    from src.pipeline.adapter import Adapter
    from src.pipeline.source.validate import to_snapshot

    metadata = sa.MetaData()
    history_table(metadata, TABLE, ID, sa.Column(column, sa.Text))
    adapter = Adapter(
        name="items",
        title="items",
        entity="items",
        id=ID,
        target="colour",
        target_type=pa.string(),
        source_tables=metadata,
        snapshot_query="",
        categorical=(),
        numeric=(),
        snapshot_schema=pa.schema([(ID, pa.int64()), (column, pa.timestamp("us", tz="UTC"))]),
        derive_features=lambda rows, params: (rows, {}),
    )
    stored = versions(url)
    chunk = pa.Table.from_pandas(stored[[ID, column]], preserve_index=False)
    return to_snapshot(chunk, adapter).column(column).to_pylist()


def test_parse_dates_stores_csv_dates_and_times_as_the_source_timestamps_gather_reads(url, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,colour,seen\n"
        "1,red,2020-03-01\n"  # a bare date: midnight UTC
        "2,red,2020-03-01T12:30:00+02:00\n"  # an offset: converted to UTC
        "3,red,2020-03-01 23:59:59\n"  # no offset: UTC, like the source's own text
        "4,red,\n"
    )  # missing stays missing
    ingest(read_table(path, parse_dates=("seen",)), url, TABLE, ID, recorded_at=DAY1)
    stored = versions(url)["seen"]
    assert stored[:3].tolist() == ["2020-03-01 00:00:00", "2020-03-01 10:30:00", "2020-03-01 23:59:59"]
    assert stored[3:].isna().all()  # NULL in the database
    utc = dt.UTC
    assert _gather_reads(url, "seen") == [
        dt.datetime(2020, 3, 1, tzinfo=utc),
        dt.datetime(2020, 3, 1, 10, 30, tzinfo=utc),
        dt.datetime(2020, 3, 1, 23, 59, 59, tzinfo=utc),
        None,
    ]
    # The same values from Parquet datetimes are the same history: nothing new to append.
    read_table(path, parse_dates=("seen",)).to_parquet(tmp_path / "items.parquet")
    assert ingest(read_table(tmp_path / "items.parquet"), url, TABLE, ID, recorded_at=DAY2).appended == 0


def test_without_parse_dates_a_csv_date_stays_text_that_gather_refuses(url, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,colour,seen\n1,red,2020-03-01\n")
    ingest(read_table(path), url, TABLE, ID, recorded_at=DAY1)
    with pytest.raises(ValueError, match=r"'2020-03-01' is not a timestamp in the source's format"):
        _gather_reads(url, "seen")


@pytest.mark.parametrize(
    "value, problem",
    [
        ("01/03/2020", "is not an ISO 8601 date or time"),
        ("2020-02-30", "is not an ISO 8601 date or time"),
        ("2020-03-01T10:00:00.5Z", "has fractions of a second"),
    ],
)
def test_an_unparsable_date_names_file_column_line_and_value(tmp_path, value, problem):
    path = tmp_path / "items.csv"
    path.write_text(f'item_id,colour,seen\n1,"two\nlines",2020-03-01\n2,red,{value}\n')
    with pytest.raises(HistoryError) as raised:
        read_table(path, parse_dates=("seen",))
    # Row 2 starts on line 4: row 1's quoted field spans lines 2 and 3.
    assert str(raised.value).startswith(f"{path}, column 'seen', line 4: {value!r} {problem}")
    with pytest.raises(HistoryError, match="--parse-dates names no column 'when'"):
        read_table(path, parse_dates=("when",))


def test_cli_parse_dates(tmp_path, url):
    path = tmp_path / "items.csv"
    path.write_text("item_id,colour,seen\n1,red,2020-03-01T08:00:00Z\n")
    ingest_tool.cli(
        [str(path), "--table", TABLE, "--id", ID, "--recorded-at", DAY1, "--parse-dates", "seen", "--url", url]
    )
    assert versions(url)["seen"].tolist() == ["2020-03-01 08:00:00"]
    bad = ingest_refusal(
        str(path), "--table", TABLE, "--id", ID, "--recorded-at", "seen", "--parse-dates", "seen", "--url", url
    )
    assert "leave it out of --parse-dates" in bad, bad


# --- bounds: a moment that has not come, an id past 64 bits --------------------------


def _tables(url: str) -> dict[str, int]:
    """Each table at `url` and its row count: what a refused ingest must leave as it was."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                name: connection.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar()
                for name in sa.inspect(connection).get_table_names()
            }
    finally:
        engine.dispose()


def test_a_recorded_at_in_the_future_is_refused_and_does_not_block_later_ingests(url):
    with pytest.raises(HistoryError, match="recorded_at is in the future .*2999-01-01 23:59:59"):
        ingest(frame([1, 2]), url, TABLE, ID, recorded_at="2999-01-01")
    assert _tables(url) == {}
    rows = frame([1, 2]).assign(**{RECORDED_AT: ["2020-01-01", "2999-01-01T00:00:00Z"]})
    with pytest.raises(HistoryError, match=rf"recorded_at \(row 1, {ID}=2\) is in the future"):
        ingest(rows, url, TABLE, ID, recorded_at_column=RECORDED_AT)
    assert _tables(url) == {}
    # Nothing was written, so the next ingest, dated now, goes in.
    assert ingest(frame([1, 2]), url, TABLE, ID).appended == 2
    assert ingest(frame([1, 2], colour=["blue", "red"]), url, TABLE, ID).appended == 1


def test_the_future_is_the_same_check_as_as_of(url):
    now = dt.datetime(2020, 1, 2, 12, tzinfo=dt.UTC)
    with pytest.raises(HistoryError, match="now 2020-01-02 12:00:00 UTC"):
        ingest(frame([1]), url, TABLE, ID, recorded_at=DAY2, now=now)  # the end of that day has not come
    assert ingest(frame([1]), url, TABLE, ID, recorded_at=DAY1, now=now).appended == 1


def test_cli_refuses_a_future_recorded_at(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,colour\n1,red\n")
    history = f"sqlite:///{tmp_path / 'history.sqlite'}"
    refusal = ingest_refusal(str(path), "--table", TABLE, "--id", ID, "--recorded-at", "2999-01-01", "--url", history)
    assert "in the future" in refusal and "\n" not in refusal, refusal
    assert _tables(history) == {}


def test_an_id_past_int64_is_refused_and_leaves_no_table(url, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(f"item_id,colour\n1,red\n{2**63},blue\n")
    with pytest.raises(HistoryError, match=f"id {2**63} .*does not fit a 64-bit integer"):
        ingest(read_table(path), url, TABLE, ID, recorded_at=DAY1)
    assert _tables(url) == {}
    refusal = ingest_refusal(str(path), "--table", TABLE, "--id", ID, "--recorded-at", DAY1, "--url", url)
    assert "does not fit a 64-bit integer" in refusal and _tables(url) == {}, refusal
    # The largest int64 itself is an id like any other.
    assert ingest(frame([2**63 - 1]), url, TABLE, ID, recorded_at=DAY1).appended == 1


def test_a_value_the_database_cannot_store_rolls_back_the_new_table_too(url):
    # An integer past 64 bits in a data column fails inside the insert: the table
    # created in the same transaction must go with it (SQLite's driver used to commit it first).
    rows = pd.DataFrame({ID: [1, 2], "colour": ["red", "blue"], "size": pd.array([1, 2**63], dtype="uint64")})
    with pytest.raises(HistoryError, match="does not fit the database's types"):
        ingest(rows, url, TABLE, ID, recorded_at=DAY1)
    assert _tables(url) == {}
    assert ingest(rows.iloc[:1], url, TABLE, ID, recorded_at=DAY1).appended == 1  # the same rows, less the bad one
