"""Bounds on one input: settings and contract overrides; rows refused while parsing, and a
parquet file refused from its metadata before anything is decoded."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml.settings import Settings
from ml.sources.errors import UnreadableInput
from ml.sources.fetch import Fetched
from ml.sources.formats import parse
from ml.sources.limits import Limits

pytestmark = pytest.mark.unit


def test_settings_bounds_and_contract_overrides():
    s = Settings(max_input_bytes=100, max_input_rows=10, max_input_decoded_bytes=1000)
    assert Limits.of(None, s) == Limits(100, 10, 1000)
    assert Limits.of({"max_rows": 3}, s) == Limits(100, 3, 1000)


def _rows(n: int) -> dict[str, bytes]:
    csv = ("a\n" + "".join(f"{i}\n" for i in range(n))).encode()
    jsonl = "".join(f'{{"a": {i}}}\n' for i in range(n)).encode()
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": list(range(n))}), buf)
    return {"csv": csv, "jsonl": jsonl, "parquet": buf.getvalue()}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_more_rows_than_the_bound_is_unreadable_and_keeps_its_bytes(fmt):
    data = _rows(11)[fmt]
    limits = Limits(max_bytes=10**6, max_rows=10, max_decoded_bytes=10**9)
    with pytest.raises(UnreadableInput) as info:
        parse(Fetched(f"x.{fmt}", data, "here"), fmt, limits=limits)
    assert info.value.rule == "too_many_rows" and info.value.data == data
    ok = Limits(max_bytes=10**6, max_rows=11, max_decoded_bytes=10**9)
    assert len(parse(Fetched(f"x.{fmt}", data, "here"), fmt, limits=ok)) == 11


def test_parquet_bomb_is_refused_from_its_metadata_without_decoding(monkeypatch):
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": np.zeros(3_000_000, dtype=np.int8)}), buf, compression="zstd")
    data = buf.getvalue()
    assert len(data) < 200_000

    def decoded(*args, **kwargs):
        raise AssertionError("decoded before the bounds were checked")

    monkeypatch.setattr(pq.ParquetFile, "read", decoded)
    limits = Limits(max_bytes=10**6, max_rows=1_000_000, max_decoded_bytes=10**9)
    with pytest.raises(UnreadableInput, match="metadata declares 3000000 rows"):
        parse(Fetched("bomb.parquet", data, "here"), "parquet", limits=limits)
    small = Limits(max_bytes=10**6, max_rows=10**7, max_decoded_bytes=1000)
    with pytest.raises(UnreadableInput) as info:
        parse(Fetched("bomb.parquet", data, "here"), "parquet", limits=small)
    assert info.value.rule == "too_large_decoded"
