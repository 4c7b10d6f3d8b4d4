"""Shared set-up of the reliability suite: the real S3 API server of the integration tests.
(`record_outcome`, which puts a case's result in the session's results table, is in
`tests/conftest.py`: the e2e package records its fault cases too.)"""

from __future__ import annotations

from tests.integration.conftest import s3_server  # noqa: F401  (the same real server fixture)
