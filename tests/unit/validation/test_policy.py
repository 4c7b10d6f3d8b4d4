"""The failure policy as a pure function: failed rule kinds + the contract's policy -> decision."""

from __future__ import annotations

import pytest

from ml.contracts import FailurePolicy
from ml.validation.policy import (
    BATCH_QUARANTINED,
    PASSED,
    ROWS_QUARANTINED,
    counts_rows,
    decide,
)

pytestmark = pytest.mark.unit

BATCH = FailurePolicy()
ROWS = FailurePolicy(mode="quarantine_rows", max_bad_fraction=0.2)
WARN = FailurePolicy(on_failure="warn")


def test_nothing_broken_passes():
    for policy in (BATCH, ROWS, WARN):
        decision = decide(set(), policy, rows=10)
        assert decision.status == PASSED and decision.passed and not decision.fail
        assert not counts_rows(set(), policy)


def test_batch_mode_quarantines_the_batch():
    decision = decide({"max"}, BATCH, rows=10)
    assert decision.status == BATCH_QUARANTINED and not decision.passed
    assert decision.reason == "contract violation" and decision.fail
    assert not counts_rows({"max"}, BATCH)
    assert not decide({"max"}, WARN, rows=10).fail  # warn: quarantined, the task goes on


def test_rows_mode_within_the_maximum_quarantines_rows():
    assert counts_rows({"max", "not_null"}, ROWS)
    decision = decide({"max", "not_null"}, ROWS, rows=20, bad_rows=4)
    assert decision.status == ROWS_QUARANTINED and decision.passed and not decision.fail
    assert decision.reason == "4 of 20 rows broke row rules"


def test_rows_mode_falls_back_to_the_batch():
    over = decide({"min"}, ROWS, rows=20, bad_rows=5)
    assert over.status == BATCH_QUARANTINED and over.fail
    assert over.reason == "5 of 20 rows bad (25.00%), over max_bad_fraction 0.2"
    none = decide({"regex"}, ROWS, rows=20, bad_rows=0)
    assert none.reason == "the row rules failed but no row could be singled out"
    assert not counts_rows({"max", "unique_key"}, ROWS)
    table = decide({"max", "unique_key"}, ROWS, rows=20)
    assert table.status == BATCH_QUARANTINED
    assert table.reason == "a table-level or column-level rule failed (not only row rules)"
    with pytest.raises(TypeError, match="counts_rows"):
        decide({"max"}, ROWS, rows=20)  # the bad rows were not counted
