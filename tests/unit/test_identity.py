"""Per-stage S3 identities: which keys every S3 access of `ml` uses, inside and outside a block."""

from __future__ import annotations

import threading

import pytest

from ml.identity import S3Identity, identity_env, use_identity
from ml.settings import Settings

pytestmark = pytest.mark.unit

INGEST = S3Identity("ingest", "AKINGEST", "ingest-secret")
DASK = S3Identity("dask", "AKDASK", "dask-secret")


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, AWS_ACCESS_KEY_ID="default", AWS_SECRET_ACCESS_KEY="default-s")


def _keys(options: dict) -> tuple[str | None, str | None]:
    return options["key"], options["secret"]


def test_without_an_identity_the_settings_keys_apply(settings):
    assert _keys(settings.s3_storage_options()) == ("default", "default-s")
    assert _keys(settings.s3_storage_options(dask=True)) == ("default", "default-s")
    assert identity_env() == {}


def test_a_block_uses_its_identity_and_the_workers_theirs(settings):
    with use_identity(INGEST, dask=DASK):
        assert _keys(settings.s3_storage_options()) == ("AKINGEST", "ingest-secret")
        assert _keys(settings.s3_storage_options(dask=True)) == ("AKDASK", "dask-secret")
        assert identity_env() == {
            "AWS_ACCESS_KEY_ID": "AKINGEST",
            "AWS_SECRET_ACCESS_KEY": "ingest-secret",
        }
    assert _keys(settings.s3_storage_options()) == ("default", "default-s")


def test_without_a_dask_identity_the_workers_act_as_the_block(settings):
    with use_identity(INGEST):
        assert _keys(settings.s3_storage_options(dask=True)) == ("AKINGEST", "ingest-secret")


def test_blocks_nest_and_restore(settings):
    with use_identity(INGEST):
        with use_identity(DASK):
            assert settings.s3_storage_options()["key"] == "AKDASK"
        assert settings.s3_storage_options()["key"] == "AKINGEST"
        with use_identity(None):  # explicitly none: the settings' keys
            assert settings.s3_storage_options()["key"] == "default"


def test_an_identity_does_not_leak_into_another_thread(settings):
    seen = []
    with use_identity(INGEST):
        thread = threading.Thread(target=lambda: seen.append(settings.s3_storage_options()["key"]))
        thread.start()
        thread.join()
    assert seen == ["default"]


def test_the_secret_is_not_in_the_repr():
    assert "ingest-secret" not in repr(INGEST)
