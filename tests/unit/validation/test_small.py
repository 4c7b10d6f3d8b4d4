"""Many small batches in one GX run (`validate_frames`): each frame's report equals the report
`validate_frame` gives it alone, rule by rule, with faults planted in some frames only."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ml.contracts import load_contract
from ml.validation.small import signature, validate_frames
from ml.validation.suite import validate_frame
from tests.orders_data import orders_day

pytestmark = pytest.mark.unit

FIELDS = (
    "rule",
    "success",
    "unexpected_count",
    "unexpected_percent",
    "unexpected_sample",
    "observed_value",
    "error",
)


def _frames() -> tuple[list[pd.DataFrame], list[str]]:
    days = [date(2024, 3, 1) + timedelta(days=i) for i in range(6)]
    frames = [
        orders_day(d, mean_orders=3 if i else 40).reset_index(drop=True) for i, d in enumerate(days)
    ]
    frames[1].loc[0, "amount"] = -5.0  # a row rule broken in one frame only
    frames[2].loc[:, "country"] = "XX"  # every row of a frame
    frames[3] = pd.concat([frames[3], frames[3].iloc[:1]], ignore_index=True)  # order_id twice
    frames[4].loc[0, "customer_id"] = "nobody"  # regex
    frames[5].loc[:, "discount"] = np.nan  # nullable: not an error
    frames[0].loc[3, "items"] = 99  # max, in the big frame
    refs = [f"s3://raw/orders/date={d.isoformat()}/b{i}" for i, d in enumerate(days)]
    return frames, refs


def test_each_frame_gets_the_report_it_would_get_alone():
    orders = load_contract("orders")
    frames, refs = _frames()
    together = validate_frames(frames, orders, refs)
    for frame, ref, report in zip(frames, refs, together, strict=True):
        alone = validate_frame(frame, orders, batch_ref=ref)
        assert report.batch_ref == ref and report.rows == alone.rows == len(frame)
        assert report.success == alone.success, (ref, report.failed_rules, alone.failed_rules)
        assert report.failed_rules == alone.failed_rules
        for mine, theirs in zip(report.rules, alone.rules, strict=True):
            assert {k: mine[k] for k in FIELDS} == {k: theirs[k] for k in FIELDS}, ref
    assert [r.success for r in together] == [False, False, False, False, False, True]
    assert "orders.order_id.unique" in together[3].failed_rules
    assert together[1].rule("orders.amount.min")["unexpected_count"] == 1


def test_frames_of_other_columns_are_not_mixed():
    frames, refs = _frames()
    other = frames[1].astype({"items": "float64"})
    assert signature(other) != signature(frames[0])
    with pytest.raises(ValueError, match="differ in columns or dtypes"):
        validate_frames([frames[0], other], "orders", refs[:2])
