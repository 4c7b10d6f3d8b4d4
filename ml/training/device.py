"""Where and how torch computes a fit: the device, the autocast dtype, the seeds."""

from __future__ import annotations

import random

import numpy as np
import torch


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast_dtype(device: str, precision: str):
    """The autocast dtype for a device and the `precision` param (None: full fp32)."""
    if not device.startswith("cuda") or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
