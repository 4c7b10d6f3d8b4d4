"""The fit loop: early stopping on the validation loss (log loss, or the standardized squared
error of a regression), a checkpoint every epoch (resumed from on a retry), DDP-aware, classes
weighted with the prior shift undone in what it returns. The loss and the output head follow the
target's kind (`ml.training.losses`, `ml.training.heads`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ml.errors import RefusedError
from ml.settings import get_settings
from ml.training import checkpoint as ckpt
from ml.training.device import autocast_dtype, pick_device, seed_everything
from ml.training.heads import LEGACY_HEAD, n_outputs
from ml.training.losses import StandardizedMSE, loss_for
from ml.training.measure import head_metrics
from ml.training.network import build_network, raw_tensors

if TYPE_CHECKING:
    from ml.features.transform import FeatureTransform
    from ml.training.checkpoint import CheckpointStore
    from ml.training.ddp import DistContext
    from ml.training.loader import Batches
    from ml.training.params import TrainParams

log = logging.getLogger(__name__)


class TrainingDivergedError(RefusedError):
    """The loss became NaN or infinite: training stops rather than registering garbage."""


@dataclass
class _Fit:
    """What one fit steps with."""

    network: torch.nn.Module  # the bare network (its weights are what the fit returns)
    model: torch.nn.Module  # what steps: the network, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    loss_fn: torch.nn.Module
    offset: Any  # log(class weight(s)): the prior shift the weighting puts into the logit(s)
    device: str
    dist: DistContext | None
    head: dict  # the output head (`ml.training.heads`): kind, classes, standardization

    @property
    def ddp(self) -> bool:
        return self.dist is not None and self.dist.world_size > 1


@dataclass
class _Progress:
    """Early-stopping state and history: what a checkpoint carries besides the weights."""

    start: int = 0
    best: dict | None = None
    best_loss: float = float("inf")
    stale: int = 0
    history: list[dict] = field(default_factory=list)


def fit_network(
    batches: Batches,
    validation: tuple,
    transform: FeatureTransform,
    hp: TrainParams,
    *,
    device: str | None = None,
    dist: DistContext | None = None,
    checkpoint: CheckpointStore | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    describe_input: str = "training input",
    head: dict | None = None,
):
    """Train with early stopping on the validation loss; return (best network on CPU, history).

    `batches` is an `ml.training.loader.Batches`; `validation` is (numeric, categorical, target) CPU
    tensors. With a `checkpoint` store, every epoch is checkpointed (rank 0) and training resumes
    from the committed checkpoint. `on_epoch(row)` runs on rank 0 after each new epoch. `head`
    (`ml.training.heads.head_config`) sets the outputs and the loss; none: a binary target.
    """
    fit = _set_up(batches, transform, hp, device or pick_device(), dist, head or LEGACY_HEAD)
    progress = _resume(fit, checkpoint, hp)
    is_main = dist is None or dist.is_main
    for epoch in range(progress.start, hp.epochs):
        row = _epoch(fit, batches, epoch, validation, hp, describe_input)
        progress.history.append(row)
        _track_best(progress, fit.network, row["val_loss"])
        if checkpoint is not None and is_main:
            checkpoint.save(epoch, _checkpoint_state(fit, progress))
        if on_epoch and is_main:
            on_epoch(row)
        if progress.stale >= hp.patience:
            log.info(
                "early stop after epoch %s (no validation improvement in %s)", epoch, progress.stale
            )
            break
    return _best_network(fit, progress), progress.history


def _set_up(batches, transform, hp: TrainParams, device: str, dist, head: dict) -> _Fit:
    seed_everything(hp.seed)
    if device == "cpu":
        torch.set_num_threads(get_settings().torch_threads)
    network = build_network(
        len(transform.numeric),
        transform.cardinalities,
        **hp.network_config(),
        outputs=n_outputs(head),
    ).to(device)
    model = dist.wrap(network, device) if dist and dist.world_size > 1 else network
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay
    )
    amp = autocast_dtype(device, hp.precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    # Weighting a class by w shifts its learned logit by log(w): subtract it when predicting
    # so probabilities stay calibrated (and log loss comparable with an unweighted model).
    loss_fn, offset = loss_for(head, batches.targets(), hp.pos_weight, device)
    return _Fit(network, model, optimizer, scaler, amp, loss_fn, offset, device, dist, head)


def _resume(fit: _Fit, checkpoint: CheckpointStore | None, hp: TrainParams) -> _Progress:
    """The progress of the committed checkpoint (weights and RNG restored), else a fresh one."""
    state = checkpoint.load() if checkpoint is not None else None
    if state is None:
        return _Progress()
    fit.network.load_state_dict(state["model"])
    fit.optimizer.load_state_dict(state["optimizer"])
    fit.scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"])
    progress = _Progress(
        start=state["epoch"] + 1,
        best=state["best"],
        best_loss=state["best_loss"],
        stale=state["stale"],
        history=list(state["history"]),
    )
    log.info("resuming from checkpoint epoch %s (%s)", state["epoch"], checkpoint.url)
    if progress.stale >= hp.patience:
        progress.start = hp.epochs  # the earlier attempt had already stopped early
    return progress


def _epoch(fit: _Fit, batches, epoch: int, validation, hp: TrainParams, describe_input: str):
    """One epoch of steps, then validation: the epoch's row of the history."""
    started = time.perf_counter()
    total, seen = run_epoch(
        fit.model, batches.epoch(epoch), fit.optimizer, fit.loss_fn, fit.scaler, fit.amp, fit.device
    )
    train_loss = float(total) / max(seen, 1)  # one device sync per epoch
    if not math.isfinite(train_loss):
        raise TrainingDivergedError(
            f"training diverged at epoch {epoch}: train loss is {train_loss} on {describe_input} "
            f"(learning_rate={hp.learning_rate}, precision={hp.precision}); check the input "
            "for NaN/inf values or lower the learning rate"
        )
    elapsed = time.perf_counter() - started
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        **_validate(fit, validation),
        "samples_per_s": seen * (fit.dist.world_size if fit.dist else 1) / elapsed,
        "epoch_s": elapsed,
    }


def run_epoch(model, batches, optimizer, loss_fn, scaler, amp, device: str):
    """One pass of optimizer steps; returns (summed loss as a device tensor, samples seen)."""
    model.train()
    total = torch.zeros((), device=device)
    seen = 0
    for numeric, categorical, target in batches:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=amp, enabled=amp is not None):
            logits = model(numeric, categorical)
        loss = loss_fn(logits.float(), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.detach() * len(target)
        seen += len(target)
    return total, seen


# The validation metrics in each epoch's row, per kind (`val_loss` decides early stopping).
VAL_METRICS = {"binary": ("roc_auc",), "multiclass": ("macro_f1",), "regression": ("rmse",)}


def _validate(fit: _Fit, validation) -> dict[str, float]:
    """Validation loss and metrics of the network as it will predict (prior shift undone)."""
    if fit.ddp:
        fit.dist.sync_buffers(fit.network)
    val_num, val_cat, val_y = validation
    with _shifted(fit.network, fit.offset):
        raw = raw_tensors(fit.network, val_num, val_cat)
    kind = fit.head["kind"]
    val = head_metrics(val_y.numpy(), raw, fit.head)
    if isinstance(fit.loss_fn, StandardizedMSE):
        loss = float(((raw - fit.loss_fn.standardize(val_y).numpy()) ** 2).mean())
    else:
        loss = val["log_loss"]
    row = {"val_loss": loss}
    if kind != "regression":
        row["val_log_loss"] = val["log_loss"]
    row.update({f"val_{k}": val[k] for k in VAL_METRICS[kind]})
    if fit.ddp:
        # Ranks must agree on early stopping; rank 0's view decides.
        row = dict(zip(row, fit.dist.broadcast_floats(list(row.values())), strict=True))
    return row


def _track_best(progress: _Progress, network, val_loss: float) -> None:
    if val_loss < progress.best_loss - 1e-4:
        progress.best_loss, progress.stale = val_loss, 0
        progress.best = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    else:
        progress.stale += 1


def _checkpoint_state(fit: _Fit, progress: _Progress) -> dict[str, Any]:
    return {
        "model": fit.network.state_dict(),
        "optimizer": fit.optimizer.state_dict(),
        "scaler": fit.scaler.state_dict(),
        "rng": ckpt.rng_state(),
        "best": progress.best,
        "best_loss": progress.best_loss,
        "stale": progress.stale,
        "history": progress.history,
    }


def _best_network(fit: _Fit, progress: _Progress):
    """The network on the CPU with the best epoch's weights, prior shift undone."""
    network = fit.network.cpu()
    if progress.best is not None:
        network.load_state_dict(progress.best)
    _shift_bias(network, _negated(fit.offset))
    return network


class _shifted:
    """Temporarily subtract `offset` from the network's output bias (prior correction)."""

    def __init__(self, network, offset: float) -> None:
        self.network, self.offset = network, offset

    def __enter__(self):
        _shift_bias(self.network, _negated(self.offset))

    def __exit__(self, *exc):
        _shift_bias(self.network, self.offset)


def _negated(offset):
    return [-x for x in offset] if isinstance(offset, list | tuple) else -offset


def _shift_bias(network, delta) -> None:
    """Add `delta` (a float, or one value per output) to the output bias."""
    if isinstance(delta, list | tuple):
        if any(delta):
            with torch.no_grad():
                bias = network.mlp[-1].bias
                bias += torch.tensor(delta, dtype=bias.dtype, device=bias.device)
    elif delta:
        with torch.no_grad():
            network.mlp[-1].bias += delta
