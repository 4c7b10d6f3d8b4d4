"""Validation on Dask: the GX suite per partition in the workers, whole-batch rules over all of them.

`validate_dask` gives the same report as `suite.validate_frame` on the whole batch: counts
summed, percentages recomputed, samples merged and capped; row count, uniqueness and freshness
computed over the whole batch (uniqueness by 64-bit row hashes counted bucket by bucket: no
process holds the batch). The per-partition functions run in the workers (an importable module:
Dask cannot tokenize functions holding GX objects from `__main__`); the GX context is cached per
worker process.
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
    key_frame,
    newest,
    partition_of,
    row_count_result,
    unique_key_result,
)
from ml.validation.report import (
    SAMPLE_SIZE,
    ValidationReport,
    empty_result,
    json_safe,
    make_report,
)
from ml.validation.rules import GLOBAL_KINDS, RuleSpec, as_contract, rule_specs, unique_columns
from ml.validation.suite import rule_result, run_gx

MAX_BUCKETS = 64  # hash buckets of the whole-batch uniqueness count (see `validate_dask`)

# (rule id, key columns) of the uniqueness rules, (rule id, column) of the freshness rules
UniqueSpecs = tuple[tuple[str, tuple[str, ...]], ...]
FreshSpecs = tuple[tuple[str, str], ...]


def validate_partition(df: pd.DataFrame, contract: Contract) -> dict[str, Any]:
    """Run the per-partition suite on one partition (a Dask task; GX context cached per worker
    process). Returns small, mergeable partial results: rows and per-rule counts and samples."""
    by_rule, gx_version = run_gx(df, contract, per_partition=True)
    columns = {str(c) for c in df.columns}
    rules = {}
    for spec in rule_specs(contract):
        if spec.kind in GLOBAL_KINDS:
            continue
        res = by_rule.get(spec.rule)
        out = rule_result(spec, res, columns)
        result = (res.result or {}) if res is not None else {}
        elements = result.get("element_count") or 0
        missing = 0 if spec.kind == "not_null" else (result.get("missing_count") or 0)
        out["_denominator"] = int(elements - missing)
        rules[spec.rule] = out
    return {"rows": len(df), "rules": rules, "gx_version": gx_version}


def _merge_partials(spec: RuleSpec, partials: list[dict[str, Any]]) -> dict[str, Any]:
    out = empty_result(spec)
    results = [p["rules"][spec.rule] for p in partials]
    if not results:
        out["error"] = "no partitions"
        return out
    out["expectation"] = results[0]["expectation"]
    out["success"] = all(r["success"] for r in results)
    failing = [r for r in results if not r["success"]] or results
    out["observed_value"] = failing[0]["observed_value"]
    out["error"] = next((r["error"] for r in results if r["error"]), None)
    counts = [r["unexpected_count"] for r in results if r["unexpected_count"] is not None]
    if counts:
        total = sum(counts)
        denominator = sum(r["_denominator"] for r in results)
        out["unexpected_count"] = total
        out["unexpected_percent"] = 100.0 * total / denominator if denominator else 0.0
        sample: list = []
        for r in results:
            sample += r["unexpected_sample"][: SAMPLE_SIZE - len(sample)]
        out["unexpected_sample"] = sample
    return out


def _row_hashes(frame):
    return pd.util.hash_pandas_object(frame, index=False)


def _partition_pass(
    df: pd.DataFrame,
    contract: Contract,
    unique_specs: UniqueSpecs,
    fresh_specs: FreshSpecs,
    n_buckets: int,
) -> tuple[dict[str, Any], dict[str, list]]:
    """Everything validation needs from one partition, in one read of it: the per-partition GX
    suite (`validate_partition`), the newest value of each freshness column, and for each
    uniqueness rule the 64-bit hashes of the rows' keys, split into `n_buckets` buckets by
    `hash % n_buckets` (each bucket is then counted on its own: see `validate_dask`)."""
    summary = validate_partition(df, contract)
    summary["newest"] = {
        rule: df[column].max() if len(df) else None for rule, column in fresh_specs
    }
    summary["key_rows"] = {}
    buckets: dict[str, list] = {}
    for rule, cols in unique_specs:
        hashes = _row_hashes(key_frame(df, cols)).to_numpy()
        summary["key_rows"][rule] = len(hashes)
        bucket = hashes % np.uint64(n_buckets)
        order = np.argsort(bucket, kind="stable")
        hashes, bucket = hashes[order], bucket[order]
        bounds = np.searchsorted(bucket, np.arange(n_buckets + 1, dtype=np.uint64))
        buckets[rule] = [hashes[bounds[b] : bounds[b + 1]] for b in range(n_buckets)]
    return summary, buckets


def _summary(work: tuple[dict, dict]) -> dict[str, Any]:
    return work[0]


def _bucket(work: tuple[dict, dict], rule: str, b: int):
    return work[1][rule][b]


def _count_duplicates(*chunks) -> tuple[int, list[int]]:
    """Rows whose key hash occurs more than once in one bucket (all copies count, like GX's
    `unique`), and up to `SAMPLE_SIZE` of those hashes."""
    hashes = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)
    values, counts = np.unique(hashes, return_counts=True)
    repeated = counts > 1
    return int(counts[repeated].sum()), [int(v) for v in values[repeated][:SAMPLE_SIZE]]


def validate_dask(
    ddf,
    contract: Contract | str,
    *,
    batch_ref: str = "",
    partition: str | None = None,
) -> ValidationReport:
    """Validate a Dask frame partition by partition on the current Dask scheduler.

    One task per partition reads it once and runs the per-partition GX suite on it
    (`validate_partition`, in parallel), takes the newest value of each freshness column, and
    hashes the keys of each uniqueness rule (a column or a key) into 64-bit hashes split into
    buckets by `hash % B`. Bucket `b` of every partition is then counted by one task, so
    duplicates across the whole batch are found with memory of about one partition's hashes
    per task (8 bytes a row, over B buckets) and no shuffle of rows. Row count and freshness
    merge from the partitions' summaries. Only partial results, counts and samples come back.
    """
    contract = as_contract(contract)
    specs = rule_specs(contract)
    partition = partition or partition_of(batch_ref)
    started = time.perf_counter()
    columns = {str(c) for c in ddf.columns}
    unique_specs = tuple(
        (spec.rule, cols)
        for spec in specs
        if (cols := unique_columns(spec)) is not None and set(cols) <= columns
    )
    fresh_specs = tuple(
        (s.rule, s.column) for s in specs if s.kind == "freshness" and s.column in columns
    )
    parts, counted = _compute(ddf, contract, unique_specs, fresh_specs)
    rows = sum(p["rows"] for p in parts)
    rules = []
    for spec in specs:
        if spec.kind not in GLOBAL_KINDS:
            rules.append(_merge_partials(spec, parts))
        elif spec.kind == "row_count":
            rules.append(row_count_result(spec, rows))
        elif spec.kind == "freshness":
            latest = newest([p["newest"].get(spec.rule) for p in parts])
            rules.append(freshness_result(spec, contract, partition, latest, columns))
        elif spec.kind == "extra_columns":
            rules.append(extra_columns_result(spec, [str(c) for c in ddf.columns]))
        else:
            rules.append(_dask_unique_result(spec, ddf, parts, counted.get(spec.rule), columns))
    gx_version = parts[0]["gx_version"] if parts else ""
    return make_report(contract, rules, rows, batch_ref, started, gx_version)


def _compute(
    ddf, contract: Contract, unique_specs: UniqueSpecs, fresh_specs: FreshSpecs
) -> tuple[list[dict[str, Any]], dict[str, list[tuple[int, list[int]]]]]:
    """(each partition's summary, each uniqueness rule's duplicate counts per bucket), in one
    computation on the Dask scheduler."""
    import dask

    n_buckets = max(1, min(ddf.npartitions, MAX_BUCKETS)) if unique_specs else 1
    work = [
        dask.delayed(_partition_pass, pure=True)(
            part, contract, unique_specs, fresh_specs, n_buckets
        )
        for part in ddf.to_delayed()
    ]
    summaries = [dask.delayed(_summary, pure=True)(w) for w in work]
    counted = {
        rule: [
            dask.delayed(_count_duplicates, pure=True)(
                *[dask.delayed(_bucket, pure=True)(w, rule, b) for w in work]
            )
            for b in range(n_buckets)
        ]
        for rule, _ in unique_specs
    }
    parts, counted = dask.compute(summaries, counted)
    return list(parts), counted


def _dask_unique_result(spec, ddf, parts, counted, columns) -> dict[str, Any]:
    out = empty_result(spec)
    cols = unique_columns(spec)
    missing = [c for c in cols if c not in columns]
    if missing:
        out["error"] = f"column(s) {missing} are missing"
        return out
    duplicated = sum(n for n, _ in counted)
    rows = sum(p["key_rows"][spec.rule] for p in parts)
    sample = None
    if duplicated:  # a second pass over the key columns: rows of up to SAMPLE_SIZE duplicates
        wanted = [h for _, hashes in counted for h in hashes][:SAMPLE_SIZE]
        keys = ddf[list(cols)].dropna()
        h = keys.map_partitions(_row_hashes, meta=("hash", "uint64"))
        sample = keys[h.isin(wanted)].head(SAMPLE_SIZE, npartitions=-1)
    if spec.kind == "unique_key":
        return unique_key_result(
            out, duplicated, rows, sample if sample is not None else pd.DataFrame()
        )
    out["success"] = duplicated == 0
    out["unexpected_count"] = duplicated
    out["unexpected_percent"] = 100.0 * duplicated / rows if rows else 0.0
    if sample is not None:
        out["unexpected_sample"] = json_safe(list(sample[spec.column]))[:SAMPLE_SIZE]
    return out
