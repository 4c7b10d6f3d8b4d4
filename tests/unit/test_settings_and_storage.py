from __future__ import annotations

import pytest

from ml import storage
from ml.settings import Settings

pytestmark = pytest.mark.unit


def test_settings_read_standard_names_and_our_prefix(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio.example:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("MLPIPE_BUCKET_RAW", "team-raw")
    s = Settings()
    assert s.bucket("raw") == "team-raw"
    assert not s.starts_local_s3  # not loopback: use that endpoint, start nothing
    assert s.s3_storage_options()["client_kwargs"]["endpoint_url"] == "http://minio.example:9000"
    assert "s" not in repr(s.aws_secret_access_key)  # secrets are not printed
    env = s.service_env()
    assert env["AWS_SECRET_ACCESS_KEY"] == "s"
    assert env["MLPIPE_BUCKET_RAW"] == "team-raw"


def test_loopback_endpoint_starts_a_local_s3_server(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    assert Settings().starts_local_s3
    monkeypatch.setenv("MLPIPE_LOCAL_S3", "false")
    assert not Settings().starts_local_s3


def test_unknown_zone_is_an_error():
    with pytest.raises(ValueError, match="unknown storage zone 'gold'"):
        Settings().bucket("gold")


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
    with pytest.raises(ValueError, match="not a batch reference"):
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
