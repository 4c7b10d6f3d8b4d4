from __future__ import annotations

import pytest

from ml import storage
from ml.storage import BadBatchRef

pytestmark = pytest.mark.unit


def test_manifest_round_trip_and_refs():
    m = storage.Manifest(
        zone="raw",
        bucket="raw",
        dataset="flights",
        partition="date=2013-01-01",
        batch_id="20260101T000000-abcd1234",
        parts=[{"name": "part-00000.parquet", "rows": 3}],
        rows=3,
        schema={"a": "int64"},
    )
    again = storage.Manifest.from_json(m.to_json())
    assert again == m
    assert m.ref == "s3://raw/flights/date=2013-01-01/20260101T000000-abcd1234"
    assert storage.parse_ref(m.ref) == (
        "raw",
        "flights",
        "date=2013-01-01",
        "20260101T000000-abcd1234",
    )
    assert m.part_urls == [f"{m.ref}/part-00000.parquet"]
    with pytest.raises(BadBatchRef, match="not a batch reference"):
        storage.parse_ref("s3://raw/flights")


def test_content_hash_sees_values_and_order():
    import pandas as pd

    a = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    assert storage.content_hash(a) == storage.content_hash(a.copy())
    assert storage.content_hash(a) != storage.content_hash(a.iloc[::-1])
    assert storage.content_hash(a) != storage.content_hash(a.assign(x=[1, 3]))


def test_batch_ids_are_unique_and_sortable():
    ids = [storage.new_batch_id() for _ in range(50)]
    assert len(set(ids)) == 50
