"""Every format read the same, typing that loses nothing, every kind of unreadable input named
and carrying its bytes."""

from __future__ import annotations

import hashlib
import io
import pickle
from datetime import date

import pandas as pd
import pytest

from ml import contracts
from ml.sources.errors import UnreadableInput
from ml.sources.formats import apply_types
from ml.sources.read import read_source
from tests.orders_data import orders_csv, orders_day

pytestmark = pytest.mark.unit

DAY = date(2024, 3, 1)


def _source(fmt: str | None = None, pattern: str = "{date}.csv") -> dict:
    spec = {"kind": "drop_folder", "path": "orders", "pattern": pattern}
    return {**spec, "format": fmt} if fmt else spec


def _drop(drop, name: str, data: bytes):
    (drop / "orders").mkdir(exist_ok=True)
    (drop / "orders" / name).write_bytes(data)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_each_format_reads_the_same_rows(drop, orders, fmt):
    expected = orders_day(DAY)
    if fmt == "csv":
        data = orders_csv(DAY)
    elif fmt == "parquet":
        buf = io.BytesIO()
        expected.to_parquet(buf, index=False)
        data = buf.getvalue()
    else:
        out = expected.assign(created_at=expected["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%S%z"))
        data = out.to_json(orient="records", lines=True).encode()
    _drop(drop, f"2024-03-01.{fmt}", data)
    # The format comes from the extension when the contract does not declare it.
    df, _ = read_source(_source(pattern=f"{{date}}.{fmt}"), DAY, orders.columns)
    assert list(df.columns) == list(expected.columns)
    assert len(df) == len(expected)
    assert str(df["created_at"].dt.tz) == "UTC"
    assert (df["created_at"] == expected["created_at"]).all()
    pd.testing.assert_series_equal(df["amount"], expected["amount"], check_dtype=False)
    assert df["discount"].isna().sum() == expected["discount"].isna().sum()


def test_typing_leaves_what_does_not_convert_for_validation_to_report():
    cols = [contracts.Column("t", "timestamp"), contracts.Column("n", "int")]
    df = apply_types(
        pd.DataFrame({"t": ["2024-03-01T00:00:00Z", "soon"], "n": [1.0, 1.5]}),
        {c.name: c.type for c in cols},
    )
    assert df["t"].tolist() == ["2024-03-01T00:00:00Z", "soon"]
    assert df["n"].dtype == "float64"
    naive = apply_types(
        pd.DataFrame({"t": pd.to_datetime(["2024-03-01 10:00"])}), {"t": "timestamp"}
    )
    assert str(naive["t"].dt.tz) == "UTC"
    ints = apply_types(pd.DataFrame({"n": [1.0, None]}), {"n": "int"})
    assert str(ints["n"].dtype) == "Int64"


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    orders_day(DAY).to_parquet(buf, index=False)
    return buf.getvalue()


UNREADABLE = {
    "empty csv": ("2024-03-01.csv", b"", "empty_file"),
    "header only": ("2024-03-01.csv", orders_csv(DAY).split(b"\n", 1)[0] + b"\n", "header_only"),
    "truncated csv": ("2024-03-01.csv", orders_csv(DAY)[:-40], "csv_truncated"),
    "cut inside a quoted field": ("2024-03-01.csv", b'a,b\n1,"unfinished\n', "csv_malformed"),
    "non-utf8 csv": (
        "2024-03-01.csv",
        orders_csv(DAY).replace(b"store", "magasin-\u00e9".encode("latin-1"), 1),
        "not_utf8",
    ),
    "corrupt parquet": ("2024-03-01.parquet", _parquet_bytes()[:-100], "corrupt_parquet"),
    "not parquet at all": ("2024-03-01.parquet", b"PAR1 but not really", "corrupt_parquet"),
    "empty parquet": ("2024-03-01.parquet", b"", "empty_file"),
    "bad json line": ("2024-03-01.jsonl", b'{"a": 1}\n{"a": 2,\n{"a": 3}\n', "bad_json_line"),
    "json line not an object": ("2024-03-01.jsonl", b'{"a": 1}\n[1, 2]\n', "bad_json_line"),
    "blank jsonl": ("2024-03-01.jsonl", b"\n\n", "no_rows"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_each_unreadable_input_is_named_and_carries_its_bytes(drop, orders, case):
    name, data, rule = UNREADABLE[case]
    _drop(drop, name, data)
    with pytest.raises(UnreadableInput) as info:
        read_source(_source(pattern="{date}" + name[10:]), DAY, orders.columns)
    exc = info.value
    assert exc.rule == rule, str(exc)
    assert rule in str(exc) and "2024-03-01" in str(exc)
    assert exc.name == name
    assert hashlib.sha256(exc.data).hexdigest() == hashlib.sha256(data).hexdigest()
    again = pickle.loads(pickle.dumps(exc))  # crosses process boundaries (Airflow, Dask)
    assert (type(again), str(again), again.rule) == (type(exc), str(exc), exc.rule)


def test_truncated_csv_names_the_short_line(drop, orders):
    _drop(drop, "2024-03-01.csv", orders_csv(DAY)[:-40])
    with pytest.raises(UnreadableInput, match=r"line \d+ has \d field\(s\), the header has 10"):
        read_source(_source(), DAY, orders.columns)
