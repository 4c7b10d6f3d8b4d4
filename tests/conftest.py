"""Shared test set-up: every test is marked unit, integration or e2e (unmarked tests fail)."""

from __future__ import annotations

import os

import pytest

# One implementation for tests and benchmarks: free loopback ports, and setting the pipeline's
# environment (cached settings and S3 clients dropped, everything put back on exit).
from bench._common import environment as pipeline_environment
from bench._common import free_port

__all__ = ["free_port", "pipeline_environment"]

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
