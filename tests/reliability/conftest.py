"""Shared set-up of the reliability suite: the real S3 API server of the integration tests, and
`record_outcome`, which puts a case's result in the session's results table (written at the end
of the session, see `tests.reliability.record`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import s3_server  # noqa: F401  (the same real server fixture)
from tests.reliability.record import CaseResult, Recorder


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
