"""Reference tables joined to a dataset: partitioned like it (`features.joins`, e.g. weather:
the same days) or snapshots (`features.lookups`, e.g. planes, airports: the latest validated one);
and the dataset's own earlier days for lag features (`features.lags`, see `ml.features.lags`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ml import contracts, storage
from ml.features.derived import timestamp_inputs
from ml.features.lags import PARTITION_TAG, lag_table, lags_of

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)

# What a join's missing partition does when the contract does not say (`joins[].missing`): the
# rows keep missing values, which the transform imputes with the train means, as it does for
# any row without a match (`ml.features.inputs` logs it and records it in the feature set).
DEFAULT_MISSING = "impute"
LAGS = "__lags__"  # the key of the dataset's own earlier rows in `join_references`' references


@dataclass(frozen=True)
class Reference:
    """One reference table joined to a dataset: a `joins` entry (partitioned like the dataset:
    the same partitions are joined) or a `lookups` entry (a snapshot table, joined whole)."""

    dataset: str
    keys: tuple[str, ...]
    right_keys: tuple[str, ...]
    columns: tuple[str, ...]
    prefix: str = ""
    snapshot: bool = False
    missing: str = "impute"  # a join's missing partition: impute | skip_day | fail

    @property
    def joined_columns(self) -> list[str]:
        return [self.prefix + c for c in self.columns]

    def prepare(self, table):
        """The reference's key and value columns, renamed as they appear after the join,
        integers as float64 (a left join's misses make them float anyway: one dtype always)."""
        frame = table[list(self.right_keys) + list(self.columns)]
        frame = frame.rename(
            columns={
                **dict(zip(self.right_keys, self.keys, strict=True)),
                **{c: self.prefix + c for c in self.columns},
            }
        )
        ints = [c for c in self.joined_columns if str(frame[c].dtype).lower().startswith("int")]
        if ints:
            frame = frame.astype(dict.fromkeys(ints, "float64"))
        return frame.drop_duplicates(subset=list(self.keys), keep="last")


def references_of(contract: Contract) -> list[Reference]:
    """The contract's `features.joins` and `features.lookups`, in join order."""
    out = []
    for kind in ("joins", "lookups"):
        for spec in contract.features.get(kind, []):
            keys = tuple(spec["keys"])
            out.append(
                Reference(
                    dataset=spec["dataset"],
                    keys=keys,
                    right_keys=tuple(spec.get("right_keys", keys)),
                    columns=tuple(spec["columns"]),
                    prefix=spec.get("prefix", ""),
                    snapshot=kind == "lookups",
                    missing=spec.get("missing", DEFAULT_MISSING),
                )
            )
    return out


def reference_datasets(contract: Contract) -> list[str]:
    """Every dataset the contract's features join (joins first, then lookups)."""
    return [r.dataset for r in references_of(contract)]


def snapshot_manifest(dataset: str, settings=None, latest=None) -> storage.Manifest:
    """The latest validated snapshot of a lookup table (from `latest`, its latest batches, when
    given); a clear error when there is none."""
    if latest is None:
        latest = storage.latest_batches("validated", dataset, settings)
    manifest = latest.get(contracts.SNAPSHOT)
    if manifest is None:
        raise storage.BatchNotFoundError(
            f"no validated snapshot of the reference table {dataset!r} "
            f"(validated/{dataset}/{contracts.SNAPSHOT}/): run ingest_{dataset} first"
        )
    return manifest


@lru_cache(maxsize=16)
def _snapshot_rows(ref: str) -> pd.DataFrame:
    return storage.read_batch(storage.read_manifest(ref))


def load_lookups(contract: Contract, settings=None) -> dict[str, pd.DataFrame]:
    """The latest validated snapshot of each lookup table of the contract (pandas frames)."""
    out = {}
    for ref in references_of(contract):
        if ref.snapshot:
            out[ref.dataset] = _snapshot_rows(snapshot_manifest(ref.dataset, settings).ref)
    return out


def join_references(left, references: dict[str, Any], contract: Contract):
    """Left-join the contract's reference tables onto `left` (a pandas or a Dask frame).

    A reference given as a pandas frame is broadcast to every partition of a Dask `left`; one
    given as a Dask frame is joined by a Dask shuffle. A lookup table (`features.lookups`) that
    is not in `references` is read from its latest validated snapshot; a missing partitioned
    reference (`features.joins`) is an error. An empty pandas reference leaves its columns
    missing. The contract's lags (`features.lags`) are joined from `references[LAGS]`, the
    dataset's own rows of earlier partitions, tagged with their partition like `left` is
    (`PARTITION_TAG`, dropped from the result).
    """
    specs = references_of(contract)
    if any(r.snapshot and r.dataset not in references for r in specs):
        references = {**load_lookups(contract), **references}
    for ref in specs:
        if ref.dataset not in references:
            raise KeyError(
                f"join {contract.dataset} -> {ref.dataset}: no {ref.dataset} rows were given"
            )
    lagged = _lag_references(left, references, contract)
    names = list(left.columns)
    for ref in specs:
        clash = [c for c in ref.joined_columns if c in names]
        if clash:
            raise contracts.ContractError(
                f"{contract.path}: join {contract.dataset} -> {ref.dataset}: column(s) {clash} "
                f"are already in the rows; give the join a `prefix`"
            )
        names += ref.joined_columns
    # Consecutive broadcast references are joined in one pass per partition; a Dask reference
    # (too large to broadcast) is joined by a Dask merge, which shuffles both sides.
    batch: list[tuple[Reference, Any]] = []
    for ref in specs:
        right = references[ref.dataset]
        if hasattr(right, "dask"):
            left = _join_broadcast(left, batch)
            batch = []
            left = left.merge(ref.prepare(right), on=list(ref.keys), how="left")
        else:
            batch.append((ref, ref.prepare(right)))
    left = _join_broadcast(left, batch + lagged)
    left = left.drop(columns=[PARTITION_TAG]) if PARTITION_TAG in left.columns else left
    return _naive_utc(left, timestamp_inputs(contract))


def _naive_utc(left, columns: list[str]):
    """Time-zone-aware timestamp columns the model reads, as naive UTC: an MLflow signature
    takes no time zone (the calendar features read naive timestamps as UTC: same values)."""
    import pandas as pd

    aware = [
        c for c in columns if c in left.columns and isinstance(left[c].dtype, pd.DatetimeTZDtype)
    ]
    if not aware:
        return left
    return left.assign(**{c: left[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in aware})


def _lag_references(left, references: dict, contract: Contract) -> list:
    """Each lag of the contract as a prepared broadcast reference keyed on (keys, partition)."""
    lags = lags_of(contract)
    if not lags:
        return []
    if LAGS not in references or PARTITION_TAG not in left.columns:
        raise KeyError(
            f"lags of {contract.dataset}: the rows need their partition ({PARTITION_TAG}) and "
            f"references[{LAGS!r}] the earlier rows they read (see ml.features.inputs)"
        )
    clash = [lag.name for lag in lags if lag.name in left.columns]
    if clash:
        raise contracts.ContractError(f"{contract.path}: lag(s) {clash} are already in the rows")
    rows = references[LAGS]
    out = []
    for lag in lags:
        keys = (*lag.keys, PARTITION_TAG)
        ref = Reference(
            dataset=f"{contract.dataset} lag {lag.name}",
            keys=keys,
            right_keys=keys,
            columns=(lag.name,),
        )
        out.append((ref, lag_table(lag, rows)))
    return out


def _join_broadcast(left, prepared: list[tuple[Reference, pd.DataFrame]]):
    """Left-join prepared pandas references onto a pandas or (partition-wise) a Dask frame."""
    if not prepared:
        return left
    if hasattr(left, "dask"):
        from dask import delayed

        meta = _left_join(left._meta, prepared)
        # One delayed object: the tables travel once per worker, not once per partition.
        tables = delayed(prepared, traverse=False)
        return left.map_partitions(_left_join, tables, meta=meta, enforce_metadata=False)
    return _left_join(left, prepared)


def _left_join(left: pd.DataFrame, prepared: list[tuple[Reference, pd.DataFrame]]) -> pd.DataFrame:
    """Each reference's value columns for the rows of `left` (a many-to-one left join: the
    references are unique on their keys, so every row of `left` stays once, in order).

    Only the key columns go through `merge` (to find the matching row of the reference); the
    value columns are then taken by position, so the wide left frame is never copied.
    """
    import numpy as np
    import pandas as pd

    added = {}
    for ref, right in prepared:
        if not len(right):  # nothing to join (a missing partition imputed): all missing
            for c in ref.joined_columns:
                added[c] = pd.Series(np.nan, index=left.index, dtype="float64", name=c)
            continue
        keys = list(ref.keys)
        if PARTITION_TAG in keys:  # one string dtype on both sides
            left = left.assign(**{PARTITION_TAG: left[PARTITION_TAG].astype("string")})
            right = right.assign(**{PARTITION_TAG: right[PARTITION_TAG].astype("string")})
        position = pd.Series(np.arange(len(right), dtype="int64"), name="__position__")
        found = left[keys].merge(
            pd.concat([right[keys].reset_index(drop=True), position], axis=1),
            on=keys,
            how="left",
        )["__position__"]
        if len(found) != len(left):  # `prepare` keeps one row per key: cannot happen
            raise AssertionError(f"join -> {ref.dataset}: {len(found)} rows for {len(left)}")
        where = found.fillna(-1).to_numpy(dtype="int64")
        for c in ref.joined_columns:
            values = right[c].array.take(where, allow_fill=True)
            added[c] = pd.Series(values, index=left.index, name=c)
    return left.assign(**added)
