"""An optional smaller variant of a trained network: magnitude pruning and dynamic int8.

`compress` loads a registered full version, prunes the smallest weights of its Linear layers
(kept only where the validation loss allows it), quantizes the Linear layers to int8
(dynamic quantization: weights int8, activations quantized on the fly; CPU scoring), then
measures size, CPU scoring latency and test-metric deltas against the full model. The variant
is registered as a version tagged `variant=int8` with those figures, and gets the alias
`challenger_compact` only when it is smaller and its ROC AUC loss is within the tolerance the
Params set (`compress_tolerance`).
"""

from __future__ import annotations

import copy
import io
import logging
import time
from typing import Any

from ml.features import sets
from ml.settings import get_settings

log = logging.getLogger(__name__)

COMPACT_ALIAS = "challenger_compact"


def quantize_dynamic(network):
    """Linear layers int8 (weights), activations quantized at run time: CPU inference."""
    import torch
    from torch.ao.quantization import quantize_dynamic as _quantize

    return _quantize(copy.deepcopy(network).eval(), {torch.nn.Linear}, dtype=torch.qint8)


def prune_magnitude(network, amount: float):
    """Zero the `amount` share of smallest-magnitude weights of each Linear layer (a copy)."""
    import torch
    from torch.nn.utils import prune

    pruned = copy.deepcopy(network)
    if amount <= 0:
        return pruned
    for module in pruned.modules():
        if isinstance(module, torch.nn.Linear):
            prune.l1_unstructured(module, "weight", amount=amount)
            prune.remove(module, "weight")  # bake the mask into the weights
    return pruned


def state_size(network) -> int:
    """Bytes of the serialized state dict."""
    import torch

    buf = io.BytesIO()
    torch.save(network.state_dict(), buf)
    return len(buf.getvalue())


def cpu_latency_ms(network, numeric, categorical, repeat: int = 5) -> float:
    """Median wall time of scoring the given rows on the CPU, in milliseconds."""
    import statistics

    from ml.training.model import predict_tensors

    predict_tensors(network, numeric[:256], categorical[:256])  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        predict_tensors(network, numeric, categorical)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def compact_variant(network, validation, test, prune_amount: float, tolerance: float):
    """(compact network, report): prune if validation log loss allows, then quantize."""
    from ml.metrics import binary_metrics
    from ml.training.model import predict_tensors

    val_num, val_cat, val_y = validation
    full_val = binary_metrics(val_y.numpy(), predict_tensors(network, val_num, val_cat))
    candidate, used = network, 0.0
    if prune_amount > 0:
        pruned = prune_magnitude(network, prune_amount)
        pruned_val = binary_metrics(val_y.numpy(), predict_tensors(pruned, val_num, val_cat))
        # Pruning is kept only "where it helps": within tolerance on the validation split.
        if full_val["roc_auc"] - pruned_val["roc_auc"] <= tolerance / 2:
            candidate, used = pruned, prune_amount
    compact = quantize_dynamic(candidate)
    num, cat, y = test
    full = binary_metrics(y.numpy(), predict_tensors(network, num, cat))
    small = binary_metrics(y.numpy(), predict_tensors(compact, num, cat))
    report = {
        "prune_amount": used,
        "size_bytes_full": float(state_size(network)),
        "size_bytes_compact": float(state_size(compact)),
        "cpu_latency_ms_full": cpu_latency_ms(network, num, cat),
        "cpu_latency_ms_compact": cpu_latency_ms(compact, num, cat),
        **{f"delta_test_{k}": small[k] - full[k] for k in ("roc_auc", "pr_auc", "log_loss", "ece")},
        "test_roc_auc_compact": small["roc_auc"],
        "test_roc_auc_full": full["roc_auc"],
    }
    report["within_tolerance"] = float(-report["delta_test_roc_auc"] <= tolerance)
    report["smaller"] = float(report["size_bytes_compact"] < report["size_bytes_full"])
    return compact, report


def compress(
    train_result: dict, params: dict[str, Any] | None = None, *, tolerance: float | None = None
) -> dict:
    """Make, measure and register the compact variant of the version `train_result` names."""
    import mlflow
    import torch

    from ml import contracts
    from ml.training.loader import frame_tensors
    from ml.training.model import network_from_config
    from ml.training.train import TrainParams, input_example, log_pyfunc, register

    s = get_settings()
    params = params or {}
    tolerance = float(params.get("compress_tolerance", 0.005) if tolerance is None else tolerance)
    prune_amount = float(params.get("prune_amount", 0.3))
    mlflow.set_tracking_uri(s.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    name, version = train_result["model_name"], train_result["model_version"]
    existing = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get("variant") == "int8" and v.tags.get("parent_version") == str(version)
    ]
    if existing:
        v = existing[0]
        log.info("version %s already has the compact variant %s", version, v.version)
        return {"model_name": name, "version": str(v.version), "reused": True, **v.tags}
    manifest = sets.read_feature_manifest(
        client.get_run(train_result["run_id"]).data.params["feature_ref"]
    )
    contract = contracts.load_contract(manifest["dataset"])
    transform = sets.load_transform(manifest)
    hp = TrainParams.from_dict(params)
    network = network_from_config(transform, hp.network_config())
    weights = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=None)
    network.load_state_dict(
        torch.load(f"{weights}/artifacts/weights.pt", map_location="cpu", weights_only=True)
    )
    network.eval()
    torch.set_num_threads(s.torch_threads)
    validation = frame_tensors(sets.read_split(manifest, "validation"), transform)
    test = frame_tensors(sets.read_split(manifest, "test"), transform)
    compact, report = compact_variant(network, validation, test, prune_amount, tolerance)
    with mlflow.start_run(run_id=train_result["run_id"]):
        mlflow.log_metrics({f"compact_{k}": v for k, v in report.items()})
        logged = log_pyfunc(
            compact,
            transform,
            hp.network_config(),
            input_example(manifest, transform),
            extra_config={"quantized": True},
        )
    tags = {
        "variant": "int8",
        "parent_version": str(version),
        "within_tolerance": str(bool(report["within_tolerance"])).lower(),
        "compress_tolerance": str(tolerance),
        **{k: f"{v:.6g}" for k, v in report.items()},
    }
    compact_version = register(
        client,
        train_result["run_id"],
        logged.model_uri,
        contract,
        manifest,
        {},
        extra_tags=tags,
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
    return {"model_name": name, "version": compact_version, "reused": False, **report}
