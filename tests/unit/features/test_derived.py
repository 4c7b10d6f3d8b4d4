"""The target: derived from the contract, missing for cancelled flights, which are dropped."""

from __future__ import annotations

import pandas as pd
import pytest

from ml.features.derived import TARGET, add_target, with_target

pytestmark = pytest.mark.unit


def test_target_and_cancelled_flights(five_days_joined, contract):
    with_target = add_target(five_days_joined, contract.target)
    cancelled = with_target["dep_delay"].isna()
    assert cancelled.any()
    assert with_target.loc[cancelled, TARGET].isna().all()
    delayed = with_target.loc[~cancelled]
    assert ((delayed["dep_delay"] > 15) == (delayed[TARGET] == 1)).all()


def test_rows_without_a_target_are_dropped_before_the_joins(tables, contract):
    flights = tables["flights"].reset_index(drop=True)
    kept = with_target(flights, contract.target)
    assert len(kept) == flights.dep_delay.notna().sum() < len(flights)  # cancelled flights
    assert kept[TARGET].notna().all()
    want = add_target(flights, contract.target).dropna(subset=[TARGET])
    pd.testing.assert_frame_equal(kept, want)
