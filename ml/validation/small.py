"""`validate_frames`: many small frames of one contract (the batches of a history load, a row or a
few hundred each) checked with ONE Great Expectations run over their concatenation, each frame
getting its own report, equal to the one `validate_frame` gives it alone.

GX's cost is per expectation and run, hardly per row: a one-row batch of a 43-rule contract
costs ~0.25 s alone, so a year of daily one-row batches spent minutes in GX's planning. Here
the row rules (not null, bounds, allowed values, regex) are read back per frame from GX's
unexpected row indexes; the rules of a whole frame are computed per frame (row count, unique
values, keys, freshness, extra columns); column existence and dtype are the same for every frame
of a group (frames are grouped by their columns and dtypes).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from ml.contracts import Contract
from ml.validation.checks import (
    extra_columns_result,
    freshness_result,
    partition_of,
    row_count_result,
    unique_key_pandas,
)
from ml.validation.report import SAMPLE_SIZE, ValidationReport, empty_result, json_safe, make_report
from ml.validation.rules import RuleSpec, as_contract, rule_specs
from ml.validation.suite import rule_result, run_gx

# Frames up to this many rows are validated together (larger ones: `validate_frame` alone).
SMALL_ROWS = 5_000
ROW_KINDS = frozenset({"not_null", "min", "max", "allowed", "regex"})  # per row: by index
SHARED_KINDS = frozenset({"exists", "type"})  # the same for frames of one columns/dtypes group
COMPLETE = {"result_format": "COMPLETE", "return_unexpected_index_query": False}


def signature(df: pd.DataFrame) -> tuple:
    """What frames validated together share: column names and dtypes, in order."""
    return tuple((str(c), str(t)) for c, t in df.dtypes.items())


def validate_frames(
    frames: list[pd.DataFrame], contract: Contract | str, batch_refs: list[str]
) -> list[ValidationReport]:
    """One report per frame (same order), as `validate_frame(frame, contract, batch_ref=ref)`
    gives it; the frames must share their columns and dtypes (`signature`)."""
    contract = as_contract(contract)
    if len({signature(f) for f in frames}) > 1:
        raise ValueError("validate_frames: the frames differ in columns or dtypes")
    started = time.perf_counter()
    combined = pd.concat(frames, ignore_index=True)
    by_rule, gx_version = run_gx(
        combined, contract, per_partition=True, by_column=False, result_format=COMPLETE
    )
    specs = rule_specs(contract)
    bounds = np.cumsum([0] + [len(f) for f in frames])
    share = (time.perf_counter() - started) / max(len(frames), 1)
    reports = []
    for i, (df, ref) in enumerate(zip(frames, batch_refs, strict=True)):
        begun = time.perf_counter() - share
        rules = [
            _rule(spec, df, contract, by_rule.get(spec.rule), int(bounds[i]), ref) for spec in specs
        ]
        reports.append(make_report(contract, rules, len(df), ref, begun, gx_version))
    return reports


def _rule(
    spec: RuleSpec, df: pd.DataFrame, contract: Contract, res: Any, offset: int, ref: str
) -> dict[str, Any]:
    columns = {str(c) for c in df.columns}
    if spec.kind == "unique_key":
        return unique_key_pandas(spec, df)
    if spec.kind == "freshness":
        newest = df[spec.column].max() if spec.column in columns else None
        return freshness_result(spec, contract, partition_of(ref), newest, columns)
    if spec.kind == "extra_columns":
        return extra_columns_result(spec, [str(c) for c in df.columns])
    if spec.kind == "row_count":
        return row_count_result(spec, len(df))
    if spec.kind == "unique":
        return _unique(spec, df)
    shared = rule_result(spec, res, columns)
    if spec.kind in SHARED_KINDS or spec.kind not in ROW_KINDS or shared.get("error"):
        return shared
    return _rows_of_frame(spec, shared, res, df, offset)


def _rows_of_frame(
    spec: RuleSpec, shared: dict[str, Any], res: Any, df: pd.DataFrame, offset: int
) -> dict[str, Any]:
    """A row rule's result restricted to the rows of one frame (`offset` in the combination)."""
    result = res.result or {}
    indexes = result.get("unexpected_index_list") or []
    values = result.get("unexpected_list") or []
    mine = [v for i, v in zip(indexes, values, strict=False) if offset <= i < offset + len(df)]
    series = df[spec.column]
    denominator = len(series) if spec.kind == "not_null" else int(series.notna().sum())
    out = dict(shared)
    out["success"] = not mine
    out["unexpected_count"] = len(mine)
    out["unexpected_percent"] = len(mine) / denominator * 100 if denominator else None
    out["unexpected_sample"] = json_safe(list(mine))[:SAMPLE_SIZE]
    return out


def _unique(spec: RuleSpec, df: pd.DataFrame) -> dict[str, Any]:
    """A column's values unique within the frame, as GX counts them (every copy)."""
    out = empty_result(spec)
    if spec.column not in df.columns:
        out["error"] = f"column {spec.column!r} is missing"
        return out
    series = df[spec.column]
    present = series[series.notna()]
    duplicated = present[present.duplicated(keep=False)]
    out["expectation"] = "expect_column_values_to_be_unique"
    out["success"] = duplicated.empty
    out["unexpected_count"] = len(duplicated)
    out["unexpected_percent"] = len(duplicated) / len(present) * 100 if len(present) else None
    out["unexpected_sample"] = json_safe(list(duplicated))[:SAMPLE_SIZE]
    return out
