"""The local stack's names, groups, state paths and endpoint parsing."""

from __future__ import annotations

import pytest

from ml.dev.stack import layout

pytestmark = pytest.mark.unit


def test_groups_name_every_service_once_in_start_order():
    assert set(layout.GROUP_SERVICES) == set(layout.GROUPS)
    grouped = [name for group in layout.GROUPS for name in layout.GROUP_SERVICES[group]]
    assert grouped == list(layout.SERVICES)
    assert layout.services_of(None) == list(layout.SERVICES)


def test_services_of_groups_and_single_services_keeps_start_order():
    assert layout.services_of(["airflow", "s3"]) == ["s3", *layout.AIRFLOW_SERVICES]
    assert layout.services_of(["dask-workers", "mlflow"]) == ["mlflow", "dask-workers"]
    with pytest.raises(ValueError, match="unknown service 'redis'; use some of s3, mlflow"):
        layout.services_of(["redis"])


def test_host_port():
    assert layout.host_port("http://127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert layout.host_port("tcp://10.0.0.5:8786") == ("10.0.0.5", 8786)
    assert layout.host_port("10.0.0.5", 8786) == ("10.0.0.5", 8786)
    assert layout.host_port("https://s3.example.org") == ("s3.example.org", 443)
    assert layout.host_port("http://[::1]:5000") == ("::1", 5000)
    assert layout.url_host("::1") == "[::1]"
    assert layout.url_host("localhost") == "localhost"


def test_state_files(settings):
    assert layout.pid_file(settings, "mlflow") == settings.state_path / "run" / "mlflow.pid"
    assert layout.log_file(settings, "s3") == settings.state_path / "logs" / "s3.log"


def test_executable_names_what_is_missing():
    with pytest.raises(layout.StackError, match="'no-such-program' is not installed"):
        layout.executable("no-such-program")
