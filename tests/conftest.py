"""Shared test set-up: every test is marked unit, integration or e2e (unmarked tests fail)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

LEVELS = ("unit", "integration", "e2e")

# Tests must never read a developer's .env or talk to a running demo stack by accident.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(level) for level in LEVELS):
            raise pytest.UsageError(
                f"{item.nodeid} has no level marker: mark it unit, integration or e2e"
            )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def pipeline_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables the pipeline reads, and drop cached settings and S3 clients;
    put everything back on exit."""
    import s3fs

    from ml import settings

    saved = {k: os.environ.get(k) for k in values}

    def forget() -> None:
        settings.reset_settings()
        s3fs.S3FileSystem.clear_instance_cache()

    os.environ.update(values)
    forget()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        forget()
