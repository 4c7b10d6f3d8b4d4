"""Names of model versions and their feature sets (no servers)."""

from __future__ import annotations

import pytest

from ml import model_versions

pytestmark = pytest.mark.unit


def test_a_version_uri_names_the_version_not_an_alias():
    assert model_versions.version_uri("flights_delay", "7") == "models:/flights_delay/7"


def test_a_registry_that_does_not_answer_is_not_read_as_no_alias(monkeypatch):
    """Fail closed: only the registry's own "does not exist" means no alias. A registry that does
    not answer raises, so a promotion never takes "no champion yet" from a connection error."""
    import socket

    from ml.settings import reset_settings

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    reset_settings()
    try:
        with pytest.raises(model_versions.RegistryUnavailable, match="not taken as 'no alias'"):
            model_versions.alias_version("flights_delay", model_versions.CHAMPION)
    finally:
        monkeypatch.undo()
        reset_settings()
