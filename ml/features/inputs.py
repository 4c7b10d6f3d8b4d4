"""The committed batches a feature computation reads, for preprocessing (a window of partitions)
and for scoring (one partition) alike: the dataset's batches, the same partitions of each joined
table, the latest snapshot of each lookup, and the earlier partitions its lags read.

A joined table with no validated batch for some of the partitions is a decision of the
contract, per join (`features.joins[].missing`):

- `impute` (the default): the rows of those days keep missing values for the joined columns,
  which the transform imputes with the train means (as it does for any row without a match);
  logged as a warning and listed in the feature set's manifest (`missing.imputed`). Refused
  when the joined table has no validated batch for any partition asked for in preprocessing
  (a table never ingested is not a gap: nothing could be imputed from it).
- `skip_day`: those days are left out (preprocessing: out of every split; scoring: the day is
  not scored now, `PartitionSkipped`, and stays pending); logged and listed (`missing.skipped`).
- `fail`: the stage fails with `MissingJoinPartitions` (a `RefusedError`: not retried), naming
  the dataset and the partitions.

A lag's earlier partition without a batch always leaves the lag missing (imputed): the first
days of any history have none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ml import storage
from ml.errors import NotFoundError, RefusedError
from ml.features.joins import (
    LAGS,
    join_references,
    reference_datasets,
    references_of,
    snapshot_manifest,
)
from ml.features.lags import PARTITION_TAG, lags_of, read_columns, source_partitions

if TYPE_CHECKING:
    from ml.contracts import Contract
    from ml.settings import Settings

log = logging.getLogger(__name__)


class MissingJoinPartitions(RefusedError):
    """A joined table lacks partitions and the contract says `missing: fail` (or nothing of
    it can be imputed): not retried, a person decides."""


class PartitionSkipped(NotFoundError):
    """Scoring: the partition's join is missing and the contract says `missing: skip_day`; it
    stays pending and is scored once the joined table has it."""


@dataclass(frozen=True)
class FeatureInputs:
    """What features of some partitions are computed from."""

    batches: dict[str, storage.Manifest]  # partition -> the dataset's batch (skipped days out)
    references: dict[str, list[storage.Manifest]]  # joined/lookup dataset -> batches to read
    lag_batches: list[storage.Manifest] = field(default_factory=list)  # earlier days for lags
    imputed: dict[str, list[str]] = field(default_factory=dict)  # dataset -> partitions
    skipped: dict[str, list[str]] = field(default_factory=dict)  # dataset -> partitions

    @property
    def upstream(self) -> list[str]:
        """Every input batch's ref: the dataset's, the references', the lags'."""
        refs = [m.ref for m in self.batches.values()]
        refs += [m.ref for ms in self.references.values() for m in ms]
        return refs + [m.ref for m in self.lag_batches if m.ref not in refs]

    @property
    def batch(self) -> storage.Manifest:
        """The one batch of a single-partition input (scoring)."""
        (only,) = self.batches.values()
        return only

    @property
    def missing(self) -> dict[str, dict[str, list[str]]]:
        """For manifests and reports: what was imputed and what was left out."""
        return {"imputed": self.imputed, "skipped": self.skipped}


def feature_inputs(
    contract: Contract,
    batches: dict[str, storage.Manifest],
    listed: dict[str, dict[str, storage.Manifest]] | None = None,
    *,
    scoring: bool = False,
) -> FeatureInputs:
    """The inputs of the dataset's `batches` (partition -> batch), each joined table's missing
    partitions handled as its contract entry says; `listed`: the latest validated batches of the
    dataset and its references, when already listed."""
    names = [contract.dataset, *reference_datasets(contract)]
    listed = dict(listed or {})
    for name in names:
        if name not in listed:
            listed[name] = storage.latest_batches("validated", name)
    batches, imputed, skipped = _missing_joins(contract, batches, listed, scoring)
    if not batches:
        raise storage.BatchNotFoundError(
            f"no {contract.dataset} partition left to compute features of: {skipped}"
        )
    references: dict[str, list[storage.Manifest]] = {}
    for ref in references_of(contract):
        latest = listed[ref.dataset]
        if ref.snapshot:
            references[ref.dataset] = [snapshot_manifest(ref.dataset, latest=latest)]
        else:
            references[ref.dataset] = [latest[p] for p in sorted(batches) if p in latest]
    lags = lags_of(contract)
    own = listed[contract.dataset]
    lag_batches = [own[p] for p in source_partitions(lags, list(batches)) if p in own]
    return FeatureInputs(batches, references, lag_batches, imputed, skipped)


def _missing_joins(
    contract: Contract,
    batches: dict[str, storage.Manifest],
    listed: dict[str, dict[str, storage.Manifest]],
    scoring: bool,
) -> tuple[dict[str, storage.Manifest], dict[str, list[str]], dict[str, list[str]]]:
    """The batches left after each join's missing partitions are handled as its contract entry
    says, and what was imputed and skipped (dataset -> partitions)."""
    batches = dict(batches)
    imputed: dict[str, list[str]] = {}
    skipped: dict[str, list[str]] = {}
    for ref in references_of(contract):
        if ref.snapshot:
            continue
        missing = sorted(set(batches) - set(listed[ref.dataset]))
        if not missing:
            continue
        what = f"join {contract.dataset} -> {ref.dataset}: no validated {ref.dataset} batch for"
        if ref.missing == "fail":
            raise MissingJoinPartitions(f"{what} {missing} (the contract says missing: fail)")
        if ref.missing == "skip_day":
            log.warning("%s %s: those days are left out (missing: skip_day)", what, missing)
            skipped[ref.dataset] = missing
            if scoring:
                raise PartitionSkipped(f"{what} {missing}: not scored now (missing: skip_day)")
            for p in missing:
                batches.pop(p, None)
        else:
            if len(missing) == len(batches) and not scoring:
                raise MissingJoinPartitions(
                    f"{what} any of the {len(missing)} partitions: nothing to impute from; "
                    f"ingest and validate {ref.dataset} first"
                )
            log.warning(
                "%s %s: their rows keep missing %s values, imputed by the transform "
                "(missing: impute)",
                what,
                missing,
                ref.dataset,
            )
            imputed[ref.dataset] = missing
    return batches, imputed, skipped


def partition_inputs(contract: Contract, partition: str) -> FeatureInputs:
    """Scoring: the inputs of one partition of the dataset (its newest validated batch)."""
    batch = storage.latest_batches("validated", contract.dataset).get(partition)
    if batch is None:
        raise storage.BatchNotFoundError(f"no validated {contract.dataset} batch for {partition}")
    return feature_inputs(contract, {partition: batch}, scoring=True)


def empty_reference(contract: Contract, dataset: str):
    """The rows of a joined table of which no partition was found: none, with its columns."""
    import pandas as pd

    for ref in references_of(contract):
        if ref.dataset == dataset:
            return pd.DataFrame(
                {c: pd.Series(dtype="float64") for c in ref.right_keys + ref.columns}
            )
    raise KeyError(dataset)


def read_lag_rows(contract: Contract, inputs: FeatureInputs, settings: Settings | None = None):
    """The earlier rows the lags read, tagged with their partition (pandas; empty when none)."""
    import pandas as pd

    lags = lags_of(contract)
    columns = read_columns(lags)
    frames = [
        storage.read_batch(m, settings)[columns].assign(**{PARTITION_TAG: m.partition})
        for m in inputs.lag_batches
    ]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in [*columns, PARTITION_TAG]})
    return pd.concat(frames, ignore_index=True)


def read_joined(contract: Contract, inputs: FeatureInputs, settings: Settings | None = None):
    """Scoring: the partition's rows joined to its references and lags (a lazy Dask frame), as
    the model takes them."""
    rows = storage.read_dask(list(inputs.batches.values()), settings)
    references: dict = {
        name: storage.read_batch(ms[0], settings) if len(ms) == 1 else _concat(ms, settings)
        for name, ms in inputs.references.items()
        if ms
    }
    for name, ms in inputs.references.items():
        if not ms:
            references[name] = empty_reference(contract, name)
    if lags_of(contract):
        rows = rows.assign(**{PARTITION_TAG: inputs.batch.partition})
        references[LAGS] = read_lag_rows(contract, inputs, settings)
    return join_references(rows, references, contract)


def _concat(manifests: list[storage.Manifest], settings):
    import pandas as pd

    return pd.concat([storage.read_batch(m, settings) for m in manifests], ignore_index=True)
