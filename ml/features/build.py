"""The preprocessing stage on the Dask cluster: validated batches -> split features + transform."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml import commit, contracts, partitions, storage
from ml.cluster import dask_client
from ml.errors import ContractError
from ml.features.derived import TARGET, derived_of, feature_columns, row_keys, with_target
from ml.features.inputs import FeatureInputs, empty_reference, feature_inputs
from ml.features.joins import LAGS, join_references, reference_datasets
from ml.features.lags import PARTITION_TAG, lags_of, read_columns
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
    """Whether a partition (`hour=`, `date=`, `month=`; `ml.partitions`) overlaps the days
    `date_from`..`date_to`: a month touched by the window is in it, as ingestion plans it."""
    return partitions.overlaps(partition, date_from, date_to)


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


def _read_group(urls: list[str], options: dict, tags: dict[str, str] | None = None) -> pd.DataFrame:
    """The parts at `urls` as one frame; `tags` (part URL -> its batch's partition): each
    row's partition in `PARTITION_TAG`, for lags."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    paths = [u.removeprefix("s3://") for u in urls]
    blobs = fs.cat(paths, on_error="raise")  # fetched concurrently: small daily parts add up
    # One arrow table, converted to pandas once: a pandas frame per daily part costs more than
    # parsing it (2x for 32 weather days).
    tables = [pq.read_table(pa.BufferReader(blobs[p])) for p in paths]
    if tags is not None:
        tables = [
            t.append_column(PARTITION_TAG, pa.array([tags[u]] * t.num_rows, pa.string()))
            for t, u in zip(tables, urls, strict=True)
        ]
    if len(tables) > 1:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return tables[0].to_pandas()


def read_grouped(
    manifests: list[storage.Manifest], settings=None, target_rows=None, max_parts=None, tag=False
):
    """Committed batches as a lazy Dask frame of partitions of about `target_rows` rows (and at
    most `max_parts` parts); `tag`: with each row's partition (`PARTITION_TAG`)."""
    import dask.dataframe as dd

    s = settings or get_settings()
    groups = group_parts(manifests, target_rows or TARGET_ROWS_PER_PARTITION, max_parts)
    if not groups:
        raise storage.BatchNotFoundError("no committed parts to read")
    options = s.s3_storage_options(dask=True)
    tags = {u: m.partition for m in manifests for u in m.part_urls} if tag else None
    meta = _read_group(groups[0][:1], options, tags).iloc[:0]
    return dd.from_map(
        _read_group,
        groups,
        options=options,
        tags=tags,
        meta=meta,
        label="read-batches",
        enforce_metadata=False,
    )


@dataclass(frozen=True)
class _Plan:
    """What a feature set is computed from, and where it goes."""

    contract: Contract
    found: FeatureInputs  # the window's batches, its references' and lags' (missing handled)
    params: dict
    inputs: list[str]  # every batch reference above: the dataset's, then the references'
    version: str
    base: str  # <features bucket>/<dataset>/<feature version>


def _plan(
    dataset: str, date_from: str | None, date_to: str | None, min_frequency: int, s: Settings
) -> _Plan:
    contract = contracts.load_contract(dataset)
    _check_target(contract)
    found = _feature_inputs(dataset, contract, date_from, date_to)
    inputs = found.upstream
    params = {"date_from": date_from, "date_to": date_to, "min_frequency": min_frequency}
    hooks = _hooks(contract, s)
    if hooks:  # which code computes them is part of the version
        params["hooks"] = hooks
    version = feature_version(inputs, contract, params)
    base = feature_set_ref(dataset, version, s).removeprefix("s3://")
    return _Plan(contract, found, params, inputs, version, base)


def _feature_inputs(
    dataset: str, contract: Contract, date_from: str | None, date_to: str | None
) -> FeatureInputs:
    """The validated batches of the window, and what their features read (joined tables' and
    lags' batches; missing join partitions handled as the contract says)."""
    names = dict.fromkeys([dataset, *reference_datasets(contract)])
    listed = {name: storage.latest_batches("validated", name) for name in names}  # once each
    batches = {p: m for p, m in listed[dataset].items() if _in_window(p, date_from, date_to)}
    if not batches:
        raise storage.BatchNotFoundError(
            f"no validated {dataset} batches between {date_from or 'the start'} and "
            f"{date_to or 'the end'}"
        )
    return feature_inputs(contract, batches, listed)


def _hooks(contract: Contract, s: Settings) -> dict[str, str]:
    """The contract's feature hooks: name -> `module:function` and a hash of its module's
    source (a changed hook makes a new feature version)."""
    import hashlib
    import importlib
    import inspect

    out = {}
    for f in derived_of(contract, s.feature_hook_modules):
        if f.op == "hook" and f.target:
            module = importlib.import_module(f.target.partition(":")[0])
            code = hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]
            out[f.name] = f"{f.target}@{code}"
    return out


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
    # This attempt writes under its own folder; other attempts (a concurrent one, or one that
    # died) are left alone: only a manifest makes a feature set, and only one is committed.
    attempt = commit.new_attempt_id()
    work = dataclasses.replace(plan, base=f"{plan.base}/{attempt}")

    splits = split_partitions(list(plan.found.batches), plan.contract.split.get("fractions", {}))
    transform = FeatureTransform.for_contract(
        plan.contract, min_frequency=min_frequency, hook_modules=s.feature_hook_modules
    )
    parts = _compute(work, splits, transform, s)
    fs.pipe_file(f"{work.base}/transform.json", transform.to_json().encode())
    manifest = {**_manifest(work, splits, parts), "ref": f"s3://{plan.base}", "attempt": attempt}
    if not commit.put_if_absent(fs, manifest_path, json.dumps(manifest, indent=2).encode()):
        commit.remove(fs, plan.base, [attempt])
        log.info("feature set %s was committed by another attempt: reusing it", plan.version)
        return FeatureSet.from_manifest(json.loads(fs.cat_file(manifest_path)), reused=True)
    log.info("feature set %s written: rows %s", plan.version, manifest["rows"])
    return FeatureSet.from_manifest(manifest, reused=False)


def _compute(
    plan: _Plan, splits: dict[str, list[str]], transform: FeatureTransform, s: Settings
) -> dict[str, list[dict]]:
    """On the cluster: join each split, fit `transform` on train, write the splits and the eval
    snapshot; returns each one's parts (`path`, `rows`)."""
    import dask

    base, options = plan.base, s.s3_storage_options(dask=True)
    kept = [*row_keys(plan.contract), TARGET]
    with dask_client(s):
        references = _read_references(plan.found, plan.contract, s)
        frames = {
            name: _joined(
                [plan.found.batches[p] for p in sorted(parts)], references, plan.contract, s
            )
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


def _read_references(found: FeatureInputs, contract: Contract, s: Settings) -> dict:
    """Each reference table: a pandas frame to broadcast when small, else a Dask frame; and the
    earlier rows the lags read (`LAGS`, pandas, only their key and value columns)."""
    references: dict[str, Any] = {}
    lags = lags_of(contract)
    if lags:
        columns = [*read_columns(lags), PARTITION_TAG]
        if found.lag_batches:
            rows = read_grouped(found.lag_batches, s, max_parts=REFERENCE_PARTS, tag=True)
            references[LAGS] = rows[columns].compute()
        else:
            references[LAGS] = empty_reference_rows(columns)
    for name, ms in found.references.items():
        if not ms:
            references[name] = empty_reference(contract, name)
        elif sum(m.rows for m in ms) <= BROADCAST_MAX_ROWS:
            # Small: one pandas copy, broadcast to every partition. Read in groups of a
            # few parts so that every worker fetches some (daily parts are tiny).
            references[name] = read_grouped(ms, s, max_parts=REFERENCE_PARTS).compute()
        else:
            references[name] = read_grouped(ms, s)
    return references


def empty_reference_rows(columns: list[str]):
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})


def _joined(batches: list[storage.Manifest], references: dict, contract: Contract, s: Settings):
    """The batches' rows that have a target, joined to the reference tables and lags (lazy)."""
    frame = read_grouped(batches, s, tag=bool(lags_of(contract)))
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
        "data": f"s3://{base}",  # where the splits are: the committing attempt's folder
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
        # Join partitions that were missing: imputed, or left out (`features.joins[].missing`).
        "missing": plan.found.missing,
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
