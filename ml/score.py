"""Batch scoring: one model version over days of validated rows, on Dask, into `predictions`.

The `champion` alias is resolved to a version once per run (`ml.score_select`) and that
version scores every partition of the run: it is written in every output row and manifest.
The model is loaded once per Dask worker process, not once per partition. Predictions are
checked against their own contract (`data_contracts/outputs/predictions.yaml`) before their
manifest commits them, and each scored day gets a drift report against the training data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml import commit, contracts, drift, storage, tracking
from ml.cluster import dask_client
from ml.errors import BadInputError
from ml.features import sets
from ml.features.derived import row_keys
from ml.features.inputs import FeatureInputs, PartitionSkipped, partition_inputs, read_joined
from ml.features.target import BINARY, target_spec
from ml.model_versions import version_uri
from ml.score_select import newest_partition, partition_of_key, resolve_champion
from ml.scoring_plan import (
    DEFAULT_THRESHOLD,
    DRIFT_THRESHOLD,
    ScoredPartition,
    ScoringPlan,
    ScoringResult,
)
from ml.settings import get_settings
from ml.training.heads import output_columns
from ml.validation.execute import validate_dask
from ml.validation.outcome import ContractViolation
from ml.validation.report import ValidationReport

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract
    from ml.features.transform import FeatureTransform

log = logging.getLogger(__name__)

# Not in data_contracts/ itself: that folder's files are the datasets that are ingested.
PREDICTIONS_CONTRACT = contracts.CONTRACTS_DIR / "outputs" / "predictions.yaml"
CLASS_COLUMN = "probability_<class>"  # stands for one column per class (multiclass contract)


def predictions_contract(target: dict[str, Any] | None = None) -> Contract:
    """The output contract of a model's target kind (`data_contracts/outputs/`): binary
    `predictions.yaml`, else `predictions_<kind>.yaml` with one probability column per class."""
    import dataclasses
    import hashlib

    spec = target_spec(target) if target else {"kind": BINARY}
    if spec["kind"] == BINARY:
        return contracts.load_contract(PREDICTIONS_CONTRACT)
    base = contracts.load_contract(
        PREDICTIONS_CONTRACT.with_name(f"predictions_{spec['kind']}.yaml")
    )
    columns = []
    for column in base.columns:
        if column.name != CLASS_COLUMN:
            columns.append(column)
            continue
        columns += [
            dataclasses.replace(column, name=n)
            for n in output_columns(spec)
            if n != column.name and n.startswith("probability_")
        ]
    classes = ",".join(spec.get("classes", []))
    digest = hashlib.sha256(f"{base.hash}:{classes}".encode()).hexdigest()[:16]
    return dataclasses.replace(base, columns=columns, hash=digest)


# Loaded models, per worker process: a model is loaded once per worker, not once per partition.
_MODELS: dict[str, Any] = {}
LOADS: dict[str, int] = {}  # model URI -> times loaded in this process (tests and benches read it)


def _load_model(model_uri: str, tracking_uri: str):
    model = _MODELS.get(model_uri)
    if model is None:
        model = _MODELS[model_uri] = tracking.load_model(model_uri, tracking_uri)
        LOADS[model_uri] = LOADS.get(model_uri, 0) + 1
    return model


def worker_loads() -> dict[str, int]:
    """How often this process loaded each model (run on Dask workers with `client.run`)."""
    return dict(LOADS)


def predict_partition(
    df: pd.DataFrame,
    model_uri: str,
    tracking_uri: str,
    version: str,
    threshold: float,
    keys: list[str],
    outputs: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Score one partition of joined raw rows; keep the keys, add the model's outputs (binary:
    probability and label; `outputs`, its columns and dtypes, for other kinds) and the version
    (column `model_version`, as the predictions contract names it)."""
    import pandas as pd

    out = df[keys].copy()
    outputs = outputs or {"probability": "float64"}
    predicted = _load_model(model_uri, tracking_uri).predict(df) if len(df) else None
    for name, dtype in outputs.items():
        values = predicted[name].to_numpy() if predicted is not None else []
        out[name] = pd.Series(values, index=df.index, dtype=dtype)
    if "probability" in outputs:
        out["label"] = out["probability"] >= threshold
    out["model_version"] = pd.Series(version, index=df.index, dtype="string")
    return out


@dataclass(frozen=True)
class ScoringContext:
    """What every partition of one run is scored with: one version of the dataset's model, the
    transform it was trained with, its drift reference, and the run's thresholds."""

    contract: Contract
    model_name: str
    version: str
    threshold: float
    drift_threshold: float
    transform: FeatureTransform
    profile: dict[str, Any]
    target: dict[str, Any] = field(default_factory=dict)  # the trained feature set's target

    @classmethod
    def load(
        cls,
        contract: Contract,
        model_name: str,
        version: str,
        *,
        threshold: float,
        drift_threshold: float,
    ) -> ScoringContext:
        """Read the version's drift reference profile (made once per version) and transform."""
        profile = drift.reference_profile(contract.dataset, model_name, version)
        manifest = sets.read_feature_manifest(profile["feature_set"])
        transform = sets.load_transform(manifest)
        return cls(
            target=manifest.get("target") or {},
            contract=contract,
            model_name=model_name,
            version=version,
            threshold=threshold,
            drift_threshold=drift_threshold,
            transform=transform,
            profile=profile,
        )

    @property
    def dataset(self) -> str:
        return self.contract.dataset

    @property
    def model_uri(self) -> str:
        return version_uri(self.model_name, self.version)

    @property
    def outputs(self) -> dict[str, str]:
        """The model's output columns and dtypes (`ml.training.heads.output_columns`)."""
        return output_columns(target_spec(self.target) if self.target else None)

    @property
    def batch_id(self) -> str:
        """The predictions batch of a partition is named by the version: a re-run replaces it.
        No `key=value` folder: a reader never turns the path into a column."""
        return f"model-{self.version}"


# The validated batch of a partition and what its features read (the same partition of the
# joined tables, lookups' snapshots, lags' earlier days): `ml.features.inputs`.
PartitionInputs = FeatureInputs


def score(
    dataset: str,
    day: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    version: str | None = None,
    model_name: str | None = None,
    drift_threshold: float = DRIFT_THRESHOLD,
) -> ScoredPartition:
    """Score one partition with one version: `day` is its key (`2013-01-05`; an hour or month
    contract's `2013-01-05T13`, `2013-01`; `ml.partitions`), default the newest validated one."""
    partition = partition_of_key(dataset, day) if day else newest_partition(dataset)
    scored = score_partitions(
        dataset,
        [partition],
        threshold,
        version=version,
        model_name=model_name,
        drift_threshold=drift_threshold,
    )
    if not scored:
        raise PartitionSkipped(f"{dataset} {partition} was not scored (see the log)")
    return scored[0]


def score_partitions(
    dataset: str,
    partitions: list[str],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    version: str | None = None,
    model_name: str | None = None,
    drift_threshold: float = DRIFT_THRESHOLD,
) -> list[ScoredPartition]:
    """Score partitions (names: `date=YYYY-MM-DD`, `hour=...`, `month=...`) with one version:
    the given one, or the champion resolved once here. One Dask session; each partition is
    committed by its own manifest."""
    if not 0 <= threshold <= 1:
        raise BadInputError(f"threshold must be a probability in 0..1, got {threshold}")
    contract = contracts.load_contract(dataset)
    model_name = model_name or contract.model_name
    version = str(version) if version is not None else resolve_champion(dataset, model_name)
    ctx = ScoringContext.load(
        contract, model_name, version, threshold=threshold, drift_threshold=drift_threshold
    )
    scored = []
    with dask_client():
        for partition in partitions:
            try:
                scored.append(_score_one(ctx, partition))
            except PartitionSkipped as exc:  # the contract's `missing: skip_day`: stays pending
                log.warning("%s %s not scored: %s", dataset, partition, exc)
    return scored


def _inputs(contract: Contract, partition: str) -> PartitionInputs:
    return partition_inputs(contract, partition)


def _predict_and_count(
    ctx: ScoringContext, inputs: PartitionInputs, prefix: str
) -> dict[str, list[int]]:
    """Write the partition's predictions under `prefix` and return its drift bin counts, in
    one pass over the input."""
    import dask
    import pandas as pd

    s = get_settings()
    joined = read_joined(ctx.contract, inputs, s)
    keys = row_keys(ctx.contract)
    meta = joined._meta[keys].copy()
    for name, dtype in ctx.outputs.items():
        meta[name] = pd.Series(dtype=dtype)
    if "probability" in ctx.outputs:
        meta["label"] = pd.Series(dtype="bool")
    meta["model_version"] = pd.Series(dtype="string")
    predictions = joined.map_partitions(
        predict_partition,
        ctx.model_uri,
        s.mlflow_tracking_uri,
        ctx.version,
        ctx.threshold,
        keys,
        ctx.outputs,
        meta=meta,
    )
    write = predictions.to_parquet(
        f"s3://{prefix}/",
        storage_options=s.s3_storage_options(dask=True),
        compression="zstd",
        write_index=False,
        compute=False,
    )
    counts = [
        dask.delayed(drift.batch_counts)(p, ctx.transform, ctx.profile) for p in joined.to_delayed()
    ]
    _, counts = dask.compute(write, counts)
    return drift.add_counts(counts)


def _check(ctx: ScoringContext, partition: str, prefix: str) -> ValidationReport:
    """The written predictions (the files of this attempt, no folder read as a column) against
    the predictions contract; refused (report kept in `reports`, nothing committed) when they
    break it."""
    import dask.dataframe as dd

    fs = storage.filesystem()
    fs.invalidate_cache(prefix)
    files = sorted(f"s3://{p}" for p in fs.ls(prefix, detail=False) if p.endswith(".parquet"))
    written = dd.read_parquet(
        files,
        storage_options=get_settings().s3_storage_options(dask=True),
        dataset={"partitioning": None},
    )
    check = validate_dask(written, predictions_contract(ctx.target), partition=partition)
    if not check.success:
        key = f"predictions/{ctx.dataset}/{partition}/{ctx.batch_id}/_report.json"
        url = storage.write_json("reports", key, check.to_dict())
        raise ContractViolation(
            f"predictions of {ctx.dataset} {partition} by {ctx.model_name} v{ctx.version} break "
            f"the predictions contract: {check.failure_summary()}; report {url}; not committed",
            ref=f"s3://{prefix}",
            report=check,
            report_url=url,
        )
    return check


def _commit(
    ctx: ScoringContext,
    partition: str,
    inputs: PartitionInputs,
    drifts: drift.DriftSummary,
    check: ValidationReport,
    attempt: str,
) -> storage.Manifest:
    """Commit the attempt's predictions; the manifest replaces the batch of an earlier run of
    the same day and version (whose attempt is removed after the switch) and spells the version
    `model_version`."""
    return storage.commit_parts(
        "predictions",
        ctx.dataset,
        partition,
        ctx.batch_id,
        attempt=attempt,
        replaces=True,
        data_time=inputs.batch.data_time or inputs.batch.created_at,
        source=ctx.model_uri,
        contract_hash=ctx.contract.hash,
        upstream=inputs.upstream,
        extra={
            "model_name": ctx.model_name,
            "model_version": ctx.version,
            "threshold": ctx.threshold,
            "feature_version": ctx.profile["feature_version"],
            "drift_report": drifts.report,
            "drifted": list(drifts.drifted),
            "predictions_contract_hash": check.contract_hash,
        },
    )


def _score_one(ctx: ScoringContext, partition: str) -> ScoredPartition:
    """Predict, measure drift, check and commit one partition."""
    inputs = _inputs(ctx.contract, partition)
    batch = f"{get_settings().bucket('predictions')}/{ctx.dataset}/{partition}/{ctx.batch_id}"
    # The committed batch of an earlier run stays readable until this attempt's manifest
    # replaces it: a failed re-run leaves the day with its old predictions, never with none.
    attempt = commit.new_attempt_id()
    prefix = f"{batch}/{attempt}"
    try:
        counts = _predict_and_count(ctx, inputs, prefix)
        check = _check(ctx, partition, prefix)
    except ContractViolation:
        commit.remove(storage.filesystem(), batch, [attempt])
        raise
    drifts = drift.report(
        ctx.profile,
        counts,
        partition=partition,
        predictions_ref=f"s3://{batch}",
        threshold=ctx.drift_threshold,
    )
    manifest = _commit(ctx, partition, inputs, drifts, check, attempt)
    log.info(
        "scored %s rows of %s %s with %s", manifest.rows, ctx.dataset, partition, ctx.model_uri
    )
    return ScoredPartition(
        ref=manifest.ref,
        rows=manifest.rows,
        model_name=ctx.model_name,
        version=ctx.version,
        partition=partition,
        drift_report=drifts.report,
        drifted=drifts.drifted,
        max_psi=drifts.max_psi,
    )


def run_scoring(
    dataset: str,
    plan: ScoringPlan,
    threshold: float = DEFAULT_THRESHOLD,
    drift_threshold: float = DRIFT_THRESHOLD,
) -> ScoringResult:
    """Score a plan's partitions with the plan's version (never the alias again)."""
    scored = (
        score_partitions(
            dataset,
            list(plan.partitions),
            threshold,
            version=plan.version,
            model_name=plan.model_name,
            drift_threshold=drift_threshold,
        )
        if plan.partitions
        else []
    )
    return ScoringResult.of(plan, scored)
