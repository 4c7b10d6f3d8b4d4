"""A logged model becomes a registered version, once per run and variant, with its lineage tags;
the full variant gets the alias `challenger`."""

from __future__ import annotations

import json
import logging

import mlflow

from ml import tracking
from ml.assets import CHALLENGER

log = logging.getLogger(__name__)

CODE_VERSION = "2"


def register(client, run_id, model_uri, contract, manifest, metrics, extra_tags=None) -> str:
    """Register a version (alias `challenger`) unless this run already registered one."""
    variant = (extra_tags or {}).get("variant", "full")
    version = _registered_by(client, contract.model_name, run_id, variant)
    if version is not None:
        log.info("run %s already registered version %s: reusing it", run_id, version)
    else:
        with tracking.stderr_as_log(log):  # MLflow prints its progress to stderr
            version = str(mlflow.register_model(model_uri, contract.model_name).version)
    tags = {
        "feature_version": manifest["feature_version"],
        "contract_hash": contract.hash,
        "code_version": CODE_VERSION,
        "input_batches": json.dumps(manifest["inputs"]),
        "variant": variant,
        **{k: f"{v:.6f}" for k, v in metrics.items() if k.startswith("test_")},
        **(extra_tags or {}),
    }
    tracking.set_version_tags(client, contract.model_name, version, tags)
    client.update_model_version(
        contract.model_name, version, description=_description(contract, manifest, metrics, variant)
    )
    if variant == "full":
        client.set_registered_model_alias(contract.model_name, CHALLENGER, version)
    return version


def _registered_by(client, model_name: str, run_id: str, variant: str) -> str | None:
    """The version of `variant` that run `run_id` registered, if it did."""
    existing = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    existing = [v for v in existing if v.tags.get("variant", "full") == variant]
    return str(existing[0].version) if existing else None


def _description(contract, manifest, metrics, variant: str) -> str:
    """What the registry's UI shows of a version: what it was trained on and how it tested."""
    scores = ", ".join(
        f"{k[5:]} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("test_")
    )
    return (
        f"{variant} model of `{contract.dataset}` (contract {contract.hash[:12]}), trained on "
        f"feature set {manifest['feature_version']} from {len(manifest['inputs'])} validated "
        f"batches ({manifest['ref']}). Test: {scores or 'no metrics'}."
    )
