"""The preprocessing stage on the Dask cluster: validated batches -> split features + transform."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from ml import contracts, storage
from ml.cluster import dask_client
from ml.errors import ContractError
from ml.features.derived import TARGET, feature_columns, row_keys, with_target
from ml.features.joins import join_references, reference_datasets, references_of, snapshot_manifest
from ml.features.sets import (
    EVAL_SNAPSHOT,
    SPLITS,
    FeatureSet,
    feature_set_ref,
    feature_version,
    split_partitions,
)
from ml.features.transform import (
    DEFAULT_MIN_FREQUENCY,
    FEATURE_CODE_VERSION,
    FeatureTransform,
    model_frame,
)
from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)

# Rows per partition of the feature parquet (and of the Dask frames behind it): daily batches
# are grouped up to about this many rows, so tasks and files are neither tiny nor huge.
TARGET_ROWS_PER_PARTITION = 500_000
# A reference table up to this many rows is read into one pandas frame and broadcast to every
# partition of the join; a larger one stays a Dask frame and Dask shuffles both sides.
BROADCAST_MAX_ROWS = 2_000_000
# Parts per read task of a broadcast reference (weather has one small part per day).
REFERENCE_PARTS = 32
TARGET_MISSING = ("drop",)  # what `target.missing` may say


def _in_window(partition: str, date_from: str | None, date_to: str | None) -> bool:
    day = date.fromisoformat(partition.removeprefix("date="))
    return (not date_from or day >= date.fromisoformat(date_from)) and (
        not date_to or day <= date.fromisoformat(date_to)
    )


def group_parts(
    manifests: list[storage.Manifest],
    target_rows: int = TARGET_ROWS_PER_PARTITION,
    max_parts: int | None = None,
) -> list[list[str]]:
    """The manifests' part URLs in order, grouped into runs of about `target_rows` rows (and at
    most `max_parts` parts): one Dask partition each. Row counts come from the manifests,
    nothing is read."""
    groups: list[list[str]] = []
    rows = 0
    for m in manifests:
        per_part = m.rows / max(len(m.parts), 1)
        for url in m.part_urls:
            if (
                not groups
                or (rows + per_part > target_rows and rows > 0)
                or len(groups[-1]) == max_parts
            ):
                groups.append([])
                rows = 0
            groups[-1].append(url)
            rows += per_part
    return groups


def _read_group(urls: list[str], options: dict) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    paths = [u.removeprefix("s3://") for u in urls]
    blobs = fs.cat(paths, on_error="raise")  # fetched concurrently: small daily parts add up
    # One arrow table, converted to pandas once: a pandas frame per daily part costs more than
    # parsing it (2x for 32 weather days).
    tables = [pq.read_table(pa.BufferReader(blobs[p])) for p in paths]
    if len(tables) > 1:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return tables[0].to_pandas()


def read_grouped(
    manifests: list[storage.Manifest], settings=None, target_rows=None, max_parts=None
):
    """Committed batches as a lazy Dask frame of partitions of about `target_rows` rows (and at
    most `max_parts` parts)."""
    import dask.dataframe as dd

    s = settings or get_settings()
    groups = group_parts(manifests, target_rows or TARGET_ROWS_PER_PARTITION, max_parts)
    if not groups:
        raise storage.BatchNotFoundError("no committed parts to read")
    options = s.s3_storage_options()
    meta = _read_group(groups[0][:1], options).iloc[:0]
    return dd.from_map(
        _read_group,
        groups,
        options=options,
        meta=meta,
        label="read-batches",
        enforce_metadata=False,
    )


@dataclass(frozen=True)
class _Plan:
    """What a feature set is computed from, and where it goes."""

    contract: Contract
    batches: dict[str, storage.Manifest]  # partition -> validated batch of the window
    references: dict[str, list[storage.Manifest]]  # reference dataset -> its batches to join
    params: dict
    inputs: list[str]  # every batch reference above: the dataset's, then the references'
    version: str
    base: str  # <features bucket>/<dataset>/<feature version>


def _plan(
    dataset: str, date_from: str | None, date_to: str | None, min_frequency: int, s: Settings
) -> _Plan:
    contract = contracts.load_contract(dataset)
    _check_target(contract)
    batches, references = _feature_inputs(dataset, contract, date_from, date_to)
    inputs = [m.ref for m in batches.values()] + [m.ref for ms in references.values() for m in ms]
    params = {"date_from": date_from, "date_to": date_to, "min_frequency": min_frequency}
    version = feature_version(inputs, contract, params)
    base = feature_set_ref(dataset, version, s).removeprefix("s3://")
    return _Plan(contract, batches, references, params, inputs, version, base)


def _feature_inputs(
    dataset: str, contract: Contract, date_from: str | None, date_to: str | None
) -> tuple[dict[str, storage.Manifest], dict[str, list[storage.Manifest]]]:
    """The validated batches of the window, and each reference table's batches to join."""
    names = dict.fromkeys([dataset, *reference_datasets(contract)])
    listed = {name: storage.latest_batches("validated", name) for name in names}  # once each
    batches = {p: m for p, m in listed[dataset].items() if _in_window(p, date_from, date_to)}
    if not batches:
        raise storage.BatchNotFoundError(
            f"no validated {dataset} batches between {date_from or 'the start'} and "
            f"{date_to or 'the end'}"
        )
    references: dict[str, list[storage.Manifest]] = {}
    for ref in references_of(contract):
        latest = listed[ref.dataset]
        if ref.snapshot:
            references[ref.dataset] = [snapshot_manifest(ref.dataset, latest=latest)]
            continue
        missing = sorted(set(batches) - set(latest))
        if missing:
            raise storage.BatchNotFoundError(
                f"join {dataset} -> {ref.dataset}: no validated {ref.dataset} batch for {missing}"
            )
        references[ref.dataset] = [latest[p] for p in sorted(batches)]
    return batches, references


def _check_target(contract: Contract) -> dict:
    target = contract.target
    # The kind's own keys (threshold, classes, ...) are checked with the contract
    # (`ml.contract_training`); a feature set needs at least a column to take its target from.
    for key in ("source_column",):
        if key not in target:
            raise ContractError(f"{contract.path}: target.{key} is required for features")
    if target.get("missing", "drop") not in TARGET_MISSING:
        raise ContractError(
            f"{contract.path}: target.missing: {target['missing']!r} is not one of "
            f"{list(TARGET_MISSING)} (rows without a target value are dropped from the splits)"
        )
    return target


def build_features(
    dataset: str,
    date_from: str | None = None,
    date_to: str | None = None,
    min_frequency: int = DEFAULT_MIN_FREQUENCY,
) -> FeatureSet:
    """Validated batches in a date window -> train/validation/test features + fitted transform.

    Runs on the Dask cluster: no process holds the dataset. Daily batches are read in groups of
    about `TARGET_ROWS_PER_PARTITION` rows, rows without a target are dropped, reference tables
    are broadcast (or shuffled when large). The train split is read and joined once and kept on
    the workers (pruned to the columns the features need) while the transform is fitted on it;
    then the splits and the eval snapshot are written (zstd parquet). Returns the committed
    feature set, `reused` when a feature set of the same version existed and was not recomputed.
    """
    s = get_settings()
    plan = _plan(dataset, date_from, date_to, min_frequency, s)
    fs = storage.filesystem(s)
    manifest_path = f"{plan.base}/{storage.MANIFEST}"
    fs.invalidate_cache(plan.base)
    if fs.exists(manifest_path):
        log.info(
            "feature set %s already exists for these inputs, contract, code and params: "
            "reusing it, nothing recomputed",
            plan.version,
        )
        return FeatureSet.from_manifest(json.loads(fs.cat_file(manifest_path)), reused=True)
    log.info("feature set %s: computing from %s input batches", plan.version, len(plan.inputs))
    if fs.exists(plan.base):
        fs.rm(plan.base, recursive=True)  # an unfinished earlier attempt: garbage, never data

    splits = split_partitions(list(plan.batches), plan.contract.split.get("fractions", {}))
    transform = FeatureTransform.for_contract(plan.contract, min_frequency=min_frequency)
    parts = _compute(plan, splits, transform, s)
    fs.pipe_file(f"{plan.base}/transform.json", transform.to_json().encode())
    manifest = _manifest(plan, splits, parts)
    fs.pipe_file(manifest_path, json.dumps(manifest, indent=2).encode())  # written last: the commit
    log.info("feature set %s written: rows %s", plan.version, manifest["rows"])
    return FeatureSet.from_manifest(manifest, reused=False)


def _compute(
    plan: _Plan, splits: dict[str, list[str]], transform: FeatureTransform, s: Settings
) -> dict[str, list[dict]]:
    """On the cluster: join each split, fit `transform` on train, write the splits and the eval
    snapshot; returns each one's parts (`path`, `rows`)."""
    import dask

    base, options = plan.base, s.s3_storage_options()
    kept = [*row_keys(plan.contract), TARGET]
    with dask_client(s):
        references = _read_references(plan.references, s)
        frames = {
            name: _joined([plan.batches[p] for p in sorted(parts)], references, plan.contract, s)
            for name, parts in splits.items()
        }
        # The train split is read and joined once, for the fit and for the write: its rows,
        # pruned to the columns the features need, stay on the workers in between (Dask spills
        # them to the workers' disks past their memory target).
        needed = list(dict.fromkeys(kept + transform.input_columns))
        train = frames.pop("train")[needed].persist()
        fit_on_dask(transform, train)
        writes = {}
        for name, frame in {"train": train, **frames}.items():
            meta = model_frame(frame._meta, transform, kept)
            out = frame.map_partitions(model_frame, transform, kept, meta=meta)
            writes[name] = _write_parts(out, f"s3://{base}/{name}", options)
        writes[EVAL_SNAPSHOT] = _write_parts(
            frames["test"], f"s3://{base}/{EVAL_SNAPSHOT}", options
        )
        written = dict(zip(writes, dask.compute(*writes.values()), strict=True))
        del train, frames
    return {name: written[name].to_dict("records") for name in (*SPLITS, EVAL_SNAPSHOT)}


def _read_references(batches: dict[str, list[storage.Manifest]], s: Settings) -> dict:
    """Each reference table: a pandas frame to broadcast when small, else a Dask frame."""
    references = {}
    for name, ms in batches.items():
        if sum(m.rows for m in ms) <= BROADCAST_MAX_ROWS:
            # Small: one pandas copy, broadcast to every partition. Read in groups of a
            # few parts so that every worker fetches some (daily parts are tiny).
            references[name] = read_grouped(ms, s, max_parts=REFERENCE_PARTS).compute()
        else:
            references[name] = read_grouped(ms, s)
    return references


def _joined(batches: list[storage.Manifest], references: dict, contract: Contract, s: Settings):
    """The batches' rows that have a target, joined to the reference tables (lazy)."""
    frame = read_grouped(batches, s)
    # Cancelled flights have no target: dropped first (see target.missing).
    frame = frame.map_partitions(with_target, contract.target)
    return join_references(frame, references, contract)


def _manifest(
    plan: _Plan, splits: dict[str, list[str]], parts: dict[str, list[dict]]
) -> dict[str, Any]:
    """The feature set's manifest: what it was computed from and where every part is."""
    contract, base = plan.contract, plan.base
    numeric, categorical = feature_columns(contract)
    return {
        "dataset": contract.dataset,
        "feature_version": plan.version,
        "ref": f"s3://{base}",
        "contract_hash": contract.hash,
        "code_version": FEATURE_CODE_VERSION,
        "params": plan.params,
        "inputs": plan.inputs,
        "splits": splits,
        "rows": {name: sum(p["rows"] for p in parts[name]) for name in SPLITS},
        "parts": parts,
        "eval_snapshot": f"s3://{base}/{EVAL_SNAPSHOT}",
        "transform": f"s3://{base}/transform.json",
        "keys": row_keys(contract),
        "numeric": numeric,
        "categorical": categorical,
        "target": {**contract.target, "column": TARGET},
    }


def fit_on_dask(transform: FeatureTransform, train) -> FeatureTransform:
    """Fit `transform` on a Dask frame: one statistics task per partition, combined exactly."""
    import dask

    parts = dask.compute(*[dask.delayed(transform.partition_stats)(p) for p in train.to_delayed()])
    return transform.fit_stats(list(parts))


def _write_parts(frame, url: str, options: dict):
    """A lazy write of each partition as `url/part-<i>.parquet` (zstd, in partition order; empty
    partitions too, so every split has a schema); computes to a frame of `path`, `rows`."""
    import pandas as pd

    meta = pd.DataFrame({"path": pd.Series(dtype="str"), "rows": pd.Series(dtype="int64")})
    return frame.map_partitions(_write_part, url, options, meta=meta, enforce_metadata=False)


def _write_part(df: pd.DataFrame, url: str, options: dict, partition_info=None):
    import pandas as pd

    path = f"{url}/part-{partition_info['number']:05d}.parquet"
    df.to_parquet(path, storage_options=options, compression="zstd", index=False)
    return pd.DataFrame({"path": [path], "rows": [len(df)]})
