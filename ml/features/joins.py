"""Reference tables joined to a dataset: partitioned like it (`features.joins`, e.g. weather:
the same days) or snapshots (`features.lookups`, e.g. planes, airports: the latest validated one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ml import contracts, storage

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)


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
    reference (`features.joins`) is an error.
    """
    specs = references_of(contract)
    if any(r.snapshot and r.dataset not in references for r in specs):
        references = {**load_lookups(contract), **references}
    for ref in specs:
        if ref.dataset not in references:
            raise KeyError(
                f"join {contract.dataset} -> {ref.dataset}: no {ref.dataset} rows were given"
            )
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
    return _join_broadcast(left, batch)


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
        keys = list(ref.keys)
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
