"""Shared test set-up: every test is marked unit, integration or e2e (unmarked tests fail)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

# Before anything imports Dask (it reads its configuration from the environment once): the
# schedulers of the tests' LocalClusters fail a task that has had no worker for 2 minutes, so a
# test whose workers died fails with the reason instead of waiting for ever.
os.environ.setdefault("DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT", "120s")

import pytest

# One implementation for tests and benchmarks: free loopback ports, and setting the pipeline's
# environment (cached settings and S3 clients dropped, everything put back on exit).
from bench._common import environment as pipeline_environment
from bench._common import free_port
from tests.reliability.record import CaseResult, Recorder

__all__ = ["free_port", "pipeline_environment"]

LEVELS = ("unit", "integration", "e2e")

# Tests must never read a developer's .env or talk to a running demo stack by accident.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")


# Packages whose modules share one set of servers (one Airflow stack for all of e2e; one results
# table for the reliability suite): under pytest-xdist (`make test TEST_WORKERS=2`) each runs
# whole on one worker. Every other module is a group of its own, so its module- and
# package-scoped servers start once per worker, not once per test.
WHOLE_PACKAGES = ("e2e", "reliability")


def test_group(nodeid: str) -> str:
    """The scheduling group of a test: its module, or its package where that runs whole."""
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1] if len(parts) > 2 and parts[1] in WHOLE_PACKAGES else "/".join(parts)


test_group.__test__ = False  # not a test


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole groups (`test_group`) to a worker, in collection order (xdist's `loadgroup` reads
    marks through a node attribute pytest 9.2 no longer has, so the groups are ours)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    config.option.loadscopereorder = False  # e2e, collected first, starts first
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(level) for level in LEVELS):
            raise pytest.UsageError(
                f"{item.nodeid} has no level marker: mark it unit, integration or e2e"
            )


# The reliability suite's results table (tests/reliability/record.py): cases of the reliability
# and e2e packages record what they did; written when the session ends.
@pytest.fixture(scope="session")
def reliability_results() -> Iterator[Recorder]:
    """The session's results; written to `results_dir()` when the session ends."""
    recorder = Recorder()
    yield recorder
    recorder.write()


@pytest.fixture
def record_outcome(reliability_results: Recorder) -> Callable[..., CaseResult]:
    """`record_outcome(suite=..., case=..., kind=..., expected=..., outcome=..., rows_in=...,
    ...)`: one row of the results table (fields of `CaseResult`); returns it. Record before
    asserting, so that a failing case shows in the table as what it did."""

    def record(**fields) -> CaseResult:
        return reliability_results.record(CaseResult(**fields))

    return record


@pytest.fixture
def record_fault(record_outcome) -> Callable[..., CaseResult]:
    """`record_fault(case=..., kind=..., survived=..., rows_in=..., ...)`: a fault case's row
    (suite `faults`, expected `survived`; outcome `survived`, or `broken` when it was not)."""

    def record(*, survived: bool, **fields) -> CaseResult:
        outcome = "survived" if survived else "broken"
        return record_outcome(suite="faults", expected="survived", outcome=outcome, **fields)

    return record
