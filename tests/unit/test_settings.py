from __future__ import annotations

import pytest

from ml.settings import Settings, UnknownZone

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
    with pytest.raises(UnknownZone, match="unknown storage zone 'gold'"):
        Settings().bucket("gold")
