"""Nothing coerced silently: NA-like text stays text unless declared, empty CSV fields are
missing, and values that cannot be stored as one type are unreadable input naming column and
rule."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml.sources.errors import UnreadableInput
from ml.sources.fetch import Fetched
from ml.sources.formats import parse

pytestmark = pytest.mark.unit

COLUMNS = [SimpleNamespace(name="id", type="int"), SimpleNamespace(name="name", type="string")]


def _parse(data: bytes, fmt: str, **kw) -> pd.DataFrame:
    return parse(Fetched(f"x.{fmt}", data, "here"), fmt, columns=COLUMNS, **kw)


def _rule(data: bytes, fmt: str) -> tuple[str, str]:
    with pytest.raises(UnreadableInput) as info:
        _parse(data, fmt)
    return info.value.rule, info.value.detail


NA_CSV = b"id,name,score\n1,NA,1.5\n2,None,NA\n3,null,\n4,n/a,2\n5,,3\n"


def test_na_like_text_stays_text_and_empty_fields_are_missing():
    df = _parse(NA_CSV, "csv")
    assert list(df["name"].iloc[:4]) == ["NA", "None", "null", "n/a"]
    assert pd.isna(df["name"].iloc[4]) and pd.isna(df["score"].iloc[2])
    assert df["score"].dtype == object or pd.api.types.is_string_dtype(df["score"])  # "NA" kept


def test_declared_na_values_are_missing_in_every_format():
    df = _parse(NA_CSV, "csv", na_values=["NA", "n/a"])
    assert [pd.isna(v) for v in df["name"]] == [True, False, False, True, True]
    assert df["score"].dtype == "float64"
    jsonl = b'{"id": 1, "name": "NA"}\n{"id": 2, "name": "None"}\n{"id": 3, "name": null}\n'
    assert [pd.isna(v) for v in _parse(jsonl, "jsonl", na_values=["NA"])["name"]] == [
        True,
        False,
        True,
    ]
    assert list(_parse(jsonl, "jsonl")["name"].iloc[:2]) == ["NA", "None"]


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "fmt", "rule", "names"),
    [
        (b'{"id": 1, "name": {"a": 1}}\n', "jsonl", "nested_value", "name"),
        (b'{"id": [1, 2], "name": "a"}\n', "jsonl", "nested_value", "id"),
        (b'{"id": 1, "name": "a"}\n{"id": "two", "name": "b"}\n', "jsonl", "mixed_types", "id"),
        (b'{"id": 1180591620717411303424, "name": "a"}\n', "jsonl", "int_overflow", "id"),
        (b'{"id": 1, "name": "a", "id": 2}\n', "jsonl", "duplicate_key", "id"),
        (b"id,name\n1180591620717411303424,a\n", "csv", "int_overflow", "id"),
        (b"id,name,name\n1,a,b\n", "csv", "duplicate_column", "name"),
        (b"id,name,\n1,a,b\n", "csv", "empty_column_name", "column 3"),
        (b"x,y\n1,a\n", "csv", "no_header", "declared column"),
        (
            _parquet(pa.table({"id": [[1], [2]], "name": ["a", "b"]})),
            "parquet",
            "unsupported_type",
            "id",
        ),
        (
            _parquet(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["id", "id"])),
            "parquet",
            "duplicate_column",
            "id",
        ),
    ],
)
def test_values_that_cannot_be_stored_are_named(data, fmt, rule, names):
    got_rule, detail = _rule(data, fmt)
    assert got_rule == rule and names in detail, detail
