"""Names of model versions and their feature sets (no servers)."""

from __future__ import annotations

import pytest

from ml import model_versions
from ml.settings import get_settings

pytestmark = pytest.mark.unit


def test_a_version_uri_names_the_version_not_an_alias():
    assert model_versions.version_uri("flights_delay", "7") == "models:/flights_delay/7"


def test_feature_set_ref_is_where_the_feature_set_is_committed():
    bucket = get_settings().bucket("features")
    assert model_versions.feature_set_ref("flights", "fv-1") == f"s3://{bucket}/flights/fv-1"
