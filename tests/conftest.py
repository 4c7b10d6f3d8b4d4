"""Shared test set-up: every test is marked unit, integration or e2e (unmarked tests fail)."""

from __future__ import annotations

import os
import socket

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
