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


def test_placeholder_secrets_are_refused_with_the_setting_named(monkeypatch, tmp_path):
    from ml.settings import PlaceholderSecret

    monkeypatch.chdir(tmp_path)
    local = {"_env_file": None, "S3_ENDPOINT_URL": "http://127.0.0.1:9000"}
    Settings(**local, AWS_SECRET_ACCESS_KEY="testing").check_secrets()  # local dev: short is ok
    with pytest.raises(PlaceholderSecret, match=r"AWS_SECRET_ACCESS_KEY .*placeholder"):
        Settings(**local, AWS_SECRET_ACCESS_KEY="change-me").check_secrets()
    with pytest.raises(PlaceholderSecret, match=r"MLPIPE_PII_SALT .*placeholder"):
        Settings(**local, pii_salt="CHANGE_ME").check_secrets()
    # a real deployment (remote S3, or secure mode) also needs the minimum length
    remote = {"_env_file": None, "S3_ENDPOINT_URL": "http://minio:9000"}
    with pytest.raises(
        PlaceholderSecret, match=r"MLPIPE_AIRFLOW_PASSWORD .*shorter than the minimum 16"
    ):
        Settings(**remote, airflow_password="short").check_secrets()
    with pytest.raises(PlaceholderSecret, match="MLPIPE_PII_SALT"):
        Settings(**local, secure=True, pii_salt="pepper").check_secrets()
    Settings(**remote, airflow_password="a-long-enough-password", pii_salt="x" * 16).check_secrets()


def test_pii_salt_version_is_passed_on_never_the_salt_in_its_place(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = Settings(_env_file=None, pii_salt="a-salt-of-some-length", pii_salt_version="2026-11")
    env = s.service_env()
    assert env["MLPIPE_PII_SALT_VERSION"] == "2026-11"
