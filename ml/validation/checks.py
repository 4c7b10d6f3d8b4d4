"""The rules we compute ourselves, not in GX: row count, key uniqueness and freshness over the
whole batch (from pandas or from Dask's partial counts), and the row rules row by row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ml import partitions
from ml.contracts import Contract
from ml.validation.report import SAMPLE_SIZE, empty_result, json_safe
from ml.validation.rules import FAILED_RULES, ROW_KINDS, RuleSpec, rule_specs


def partition_of(batch_ref: str) -> str | None:
    """The partition in a batch reference (`s3://raw/<dataset>/<partition>/<batch_id>`)."""
    parts = batch_ref.removeprefix("s3://").strip("/").split("/")
    return parts[2] if len(parts) == 4 else None


def partition_end(partition: str | None, granularity: str = "day"):
    """The end of a partition (`date=2013-01-01` -> 2013-01-02 00:00, `month=2013-01` ->
    2013-02-01, `hour=2013-01-01T05` -> 06:00; `ml.partitions`), None if it has no time range.
    A bare key (`2013-01-01`) is read by `granularity`."""
    if not partition or partition == partitions.SNAPSHOT:
        return None
    try:
        if "=" in partition:
            return pd.Timestamp(partitions.name_range(partition)[1])
        return pd.Timestamp(partitions.end(partition, granularity))
    except partitions.PartitionKeyError:
        return None


def freshness_result(
    spec: RuleSpec, contract: Contract, partition: str | None, newest: Any, columns: set[str]
) -> dict[str, Any]:
    """Newest value of the column >= end of the partition - max_lag_hours (tz-aware columns:
    the partition's end is taken in UTC)."""
    out = empty_result(spec)
    lag = spec.kwargs["max_lag_hours"]
    end = partition_end(partition, contract.partition.get("granularity", "day"))
    if spec.column not in columns:
        out["error"] = f"column {spec.column!r} is missing"
        return out
    if end is None:
        out["error"] = f"no partition date to measure freshness against (partition {partition!r})"
        return out
    if newest is None or pd.isna(newest):
        out["error"] = f"column {spec.column!r} has no values"
        return out
    try:
        newest = pd.Timestamp(newest)
        if newest.tzinfo is not None:
            end = end.tz_localize("UTC")
        threshold = end - pd.Timedelta(hours=lag)
        out["observed_value"] = newest.isoformat()
        out["success"] = bool(newest >= threshold)
    except (TypeError, ValueError) as exc:  # not a timestamp: the type rule says so too
        out["error"] = f"cannot compare {newest!r} with the partition end: {exc}"
        return out
    if not out["success"]:
        out["error"] = (
            f"newest {spec.column} {newest.isoformat()} is older than {threshold.isoformat()} "
            f"(end of {partition} minus {lag:g} h)"
        )
    return out


def newest(values: list[Any]) -> Any:
    """The newest of the partitions' newest values (missing ones left out)."""
    present = [v for v in values if v is not None and not pd.isna(v)]
    try:
        return max(present) if present else None
    except TypeError:  # mixed types: the type rule reports it; freshness compares the first
        return present[0]


def extra_columns_result(spec: RuleSpec, columns: list[str]) -> dict[str, Any]:
    """Undeclared columns: a failure under `extra_columns: reject`; under `drop` a pass that
    lists them (left out of `validated`); under `keep` (output contracts, whose rows carry the
    input's row keys) a pass. `observed_value` lists them either way."""
    out = empty_result(spec)
    declared = set(spec.kwargs["declared"])
    extra = [c for c in columns if c not in declared]
    out["observed_value"] = extra
    out["unexpected_count"] = len(extra)
    if spec.kwargs["policy"] in ("drop", "keep"):
        out["success"] = True
        if extra and spec.kwargs["policy"] == "drop":
            out["dropped_columns"] = extra
    else:
        out["success"] = not extra
        if extra:
            out["error"] = (
                f"{len(extra)} undeclared column(s) {extra[:20]} (extra_columns: reject; "
                "declare them or set extra_columns: drop)"
            )
    return out


def row_count_result(spec: RuleSpec, rows: int) -> dict[str, Any]:
    out = empty_result(spec)
    low, high = spec.kwargs.get("min_value"), spec.kwargs.get("max_value")
    out["observed_value"] = rows
    out["success"] = (low is None or rows >= low) and (high is None or rows <= high)
    return out


def key_frame(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The key columns of the rows that have a value in every key column."""
    return df[list(columns)].dropna()


def unique_key_pandas(spec: RuleSpec, df: pd.DataFrame) -> dict[str, Any]:
    """A key's uniqueness over one pandas frame."""
    out = empty_result(spec)
    cols = spec.kwargs["columns"]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        out["error"] = f"column(s) {missing} are missing"
        return out
    keys = key_frame(df, cols)
    dup = keys[keys.duplicated(keep=False)]
    return unique_key_result(out, len(dup), len(keys), dup.head(SAMPLE_SIZE))


def unique_key_result(out: dict, duplicated: int, rows: int, sample: pd.DataFrame) -> dict:
    """Every row whose key occurs more than once counts (both copies), like GX's `unique`."""
    out["success"] = duplicated == 0
    out["unexpected_count"] = int(duplicated)
    out["unexpected_percent"] = 100.0 * duplicated / rows if rows else 0.0
    out["unexpected_sample"] = json_safe(
        [dict(zip(sample.columns, row, strict=True)) for row in sample.itertuples(index=False)]
    )[:SAMPLE_SIZE]
    return out


def row_failures(df: pd.DataFrame, contract: Contract) -> pd.Series:
    """For each row, the ids of the row-level rules it breaks (`ROW_KINDS`), as a list.

    Same semantics as the GX expectations: value rules ignore missing values, bounds are
    inclusive, regexes are searched in the value's text.
    """
    names = np.empty(len(df), dtype=object)
    names[:] = [[] for _ in range(len(df))]
    for spec in rule_specs(contract):
        if spec.kind not in ROW_KINDS or spec.column not in df.columns:
            continue
        bad = _bad_rows(spec, df[spec.column])
        for i in np.flatnonzero(bad.fillna(False).to_numpy(dtype=bool)):
            names[i].append(spec.rule)
    return pd.Series(names, index=df.index, name=FAILED_RULES, dtype=object)


def _bad_rows(spec: RuleSpec, col: pd.Series) -> pd.Series:
    """Which values of a column break one row rule."""
    present = col.notna()
    if spec.kind == "not_null":
        return ~present
    if spec.kind == "min":
        return present & (col < spec.kwargs["min_value"])
    if spec.kind == "max":
        return present & (col > spec.kwargs["max_value"])
    if spec.kind == "allowed":
        return present & ~col.isin(spec.kwargs["value_set"])
    text = col[present].astype(str)
    matched = text.str.contains(spec.kwargs["regex"], regex=True)
    bad = present.copy()
    bad[present] = ~matched.astype(bool)
    return bad
