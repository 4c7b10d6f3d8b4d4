"""What a training task is configured by: the network's and the fit's params, and the compact
variant's. Plain dataclasses (no torch), so the train DAG takes its Param defaults from them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ml.errors import BadInputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What is fitted after training (ml.training.calibration says what each fits, on which split).
CALIBRATIONS = ("scale_prior", "prior", "affine", "temperature", "none")
_AT_LEAST_ONE = ("epochs", "batch_size", "hidden", "layers", "emb_dim", "nproc_per_node")


class InvalidParamsError(BadInputError):
    """A training param out of its range: names the param, its value and the rule."""


def _known(cls: type, values: dict[str, Any] | None) -> dict[str, Any]:
    """The entries of `values` that are fields of the dataclass `cls` and not None."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in (values or {}).items() if k in names and v is not None}


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 12
    batch_size: int = 2048
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    hidden: int = 256
    layers: int = 3
    emb_dim: int = 16
    dropout: float = 0.1
    patience: int = 3
    seed: int = 42
    precision: str = "auto"  # auto: bf16 (or fp16 + grad scaler) on CUDA, fp32 on CPU
    pos_weight: bool = True  # weight positives by negatives/positives (then undo the prior shift)
    memory_budget_mb: int = 2048  # a split larger than this streams shard by shard
    nproc_per_node: int = 1  # > 1: DDP through torchrun, one process per GPU
    calibration: str = "scale_prior"  # of the binary / multiclass outputs, after training

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainParams:
        """The params among `values` (other keys, and None values, ignored), checked."""
        hp = cls(**_known(cls, values))
        if hp.precision not in PRECISIONS:
            raise InvalidParamsError(
                f"train param precision={hp.precision!r}: use one of {PRECISIONS}"
            )
        if hp.calibration not in CALIBRATIONS:
            raise InvalidParamsError(
                f"train param calibration={hp.calibration!r}: use one of {CALIBRATIONS}"
            )
        for name in _AT_LEAST_ONE:
            if int(getattr(hp, name)) < 1:
                raise InvalidParamsError(f"train param {name}={getattr(hp, name)!r}: must be >= 1")
        if not hp.learning_rate > 0:
            raise InvalidParamsError(f"train param learning_rate={hp.learning_rate!r}: must be > 0")
        return hp

    def network_config(self) -> dict:
        return {
            "hidden": self.hidden,
            "layers": self.layers,
            "emb_dim": self.emb_dim,
            "dropout": self.dropout,
        }


@dataclass(frozen=True)
class CompressParams:
    """The compact (pruned, int8) variant: the share of weights pruned, and the largest test
    ROC AUC loss against the full model that still earns it the compact alias."""

    prune_amount: float = 0.3
    compress_tolerance: float = 0.005

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> CompressParams:
        return cls(**{k: float(v) for k, v in _known(cls, values).items()})
