"""The compression task: an optional smaller variant of a registered full version.

`compress` loads the full version's network, makes and measures its compact variant
(`ml.training.compact`: pruning where the validation split allows, dynamic int8), logs it in the
training run and registers it as a version tagged `variant=int8` with those figures. It gets the
alias `challenger_compact` only when it is smaller and its ROC AUC loss is within the tolerance
the Params set (`compress_tolerance`). Once per full version.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import torch

from ml import contracts, tracking
from ml.errors import RefusedError
from ml.features import sets
from ml.features.target import BINARY, target_kind
from ml.settings import get_settings
from ml.training.compact import compact_variant
from ml.training.network import network_from_config
from ml.training.package import input_example, log_pyfunc
from ml.training.params import CompressParams, TrainParams
from ml.training.register import register
from ml.training.result import CompactResult, TrainResult
from ml.training.tensors import frame_tensors
from ml.training.weights import FILE_NAME as WEIGHTS_FILE
from ml.training.weights import load_weights

log = logging.getLogger(__name__)

COMPACT_ALIAS = "challenger_compact"


def compress(
    train_result: TrainResult,
    params: dict[str, Any] | None = None,
    *,
    tolerance: float | None = None,
) -> CompactResult:
    """Make, measure and register the compact variant of the version `train_result` names."""
    cp = CompressParams.from_dict(params)
    tolerance = cp.compress_tolerance if tolerance is None else float(tolerance)
    client = tracking.client()
    name, version = train_result.model_name, train_result.version
    existing = _compact_of(client, name, version)
    if existing is not None:
        log.info("version %s already has the compact variant %s", version, existing.version)
        return CompactResult(name, str(existing.version), True, dict(existing.tags))
    feature_ref = client.get_run(train_result.run_id).data.params["feature_ref"]
    manifest = sets.read_feature_manifest(feature_ref)
    kind = target_kind(manifest.get("target") or {})
    if kind != BINARY:
        raise RefusedError(
            f"compact variant of {name} v{version}: made for binary targets only (its tolerance "
            f"is a ROC AUC loss); this model's target is {kind}"
        )
    transform = sets.load_transform(manifest)
    hp = TrainParams.from_dict(params)
    network, head = _full_network(name, version, transform, hp)
    torch.set_num_threads(get_settings().torch_threads)
    validation = frame_tensors(sets.read_split(manifest, "validation"), transform)
    test = frame_tensors(sets.read_split(manifest, "test"), transform)
    compact, report = compact_variant(network, validation, test, cp.prune_amount, tolerance)
    with mlflow.start_run(run_id=train_result.run_id):
        mlflow.log_metrics({f"compact_{k}": v for k, v in report.items()})
        logged = log_pyfunc(
            compact,
            transform,
            hp.network_config(),
            input_example(manifest, transform),
            extra_config={"quantized": True, **({"target": head} if head else {})},
        )
    tags = {
        "variant": "int8",
        "parent_version": str(version),
        "within_tolerance": str(bool(report["within_tolerance"])).lower(),
        "compress_tolerance": str(tolerance),
        **{k: f"{v:.6g}" for k, v in report.items()},
    }
    contract = contracts.load_contract(manifest["dataset"])
    compact_version = register(
        client, train_result.run_id, logged.model_uri, contract, manifest, {}, extra_tags=tags
    )
    if report["within_tolerance"] and report["smaller"]:
        client.set_registered_model_alias(name, COMPACT_ALIAS, compact_version)
    log.info(
        "compact variant of %s v%s: v%s, %s",
        name,
        version,
        compact_version,
        {k: round(v, 4) for k, v in report.items()},
    )
    return CompactResult(name, compact_version, False, report)


def _compact_of(client, name: str, version: str):
    """The compact variant already registered for this full version, if any."""
    for v in client.search_model_versions(f"name = '{name}'"):
        if v.tags.get("variant") == "int8" and v.tags.get("parent_version") == str(version):
            return v
    return None


def _full_network(name: str, version: str, transform, hp: TrainParams):
    """The network of a registered full version (its plain-array weights artifact), in eval
    mode, and its calibrated head (the config's `target`; None for a model without one)."""
    network = network_from_config(transform, hp.network_config())
    weights = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=None)
    network.load_state_dict(load_weights(f"{weights}/artifacts/{WEIGHTS_FILE}"))
    network.eval()
    config = Path(weights, "artifacts", "config.json")
    head = json.loads(config.read_text()).get("target") if config.exists() else None
    return network, head
