"""The compact variant of a trained network, made and measured: magnitude pruning (kept only
where the validation split allows it), dynamic int8, then size, CPU latency and test deltas."""

from __future__ import annotations

import copy
import io
import statistics
import time

import torch
from torch.nn.utils import prune

from ml.metrics import binary_metrics
from ml.training.network import predict_tensors, quantize_dynamic


def prune_magnitude(network, amount: float):
    """Zero the `amount` share of smallest-magnitude weights of each Linear layer (a copy)."""
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
    buf = io.BytesIO()
    torch.save(network.state_dict(), buf)
    return len(buf.getvalue())


def cpu_latency_ms(network, numeric, categorical, repeat: int = 5) -> float:
    """Median wall time of scoring the given rows on the CPU, in milliseconds."""
    predict_tensors(network, numeric[:256], categorical[:256])  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        predict_tensors(network, numeric, categorical)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _metrics(network, tensors) -> dict[str, float]:
    numeric, categorical, target = tensors
    return binary_metrics(target.numpy(), predict_tensors(network, numeric, categorical))


def _pruned_if_close(network, validation, prune_amount: float, tolerance: float):
    """(network to quantize, pruning share used): pruning is kept only "where it helps",
    within half the tolerance on the validation split."""
    if prune_amount <= 0:
        return network, 0.0
    pruned = prune_magnitude(network, prune_amount)
    loss = _metrics(network, validation)["roc_auc"] - _metrics(pruned, validation)["roc_auc"]
    return (pruned, prune_amount) if loss <= tolerance / 2 else (network, 0.0)


def compact_variant(network, validation, test, prune_amount: float, tolerance: float):
    """(compact network, report): prune if validation ROC AUC allows, then quantize."""
    candidate, used = _pruned_if_close(network, validation, prune_amount, tolerance)
    compact = quantize_dynamic(candidate)
    num, cat, _ = test
    full, small = _metrics(network, test), _metrics(compact, test)
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
