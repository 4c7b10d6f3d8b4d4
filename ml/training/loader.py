"""The training input pipeline: parquet shards of a feature split -> batches of tensors.

Columns are sliced out of each shard as whole arrays (never a per-row `__getitem__`). A split
that fits the memory budget is loaded once; per epoch it is shuffled with one gather into a
(pinned, on CUDA) buffer and cut into contiguous batches, each a zero-copy view. A larger split
streams shard by shard (shard order and rows within a shard shuffled), the next shard read in a
background thread while the current one trains. Under DDP every rank takes an equal share of
every shard, so all ranks step the same number of times.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from queue import Queue
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq
import torch

from ml import storage
from ml.errors import NotFoundError
from ml.features import sets
from ml.features.derived import TARGET
from ml.features.target import target_spec
from ml.features.transform import FeatureTransform
from ml.training.heads import head_config
from ml.training.tensors import categorical_columns, frame_tensors, numeric_columns

if TYPE_CHECKING:
    from ml.training.ddp import DistContext
    from ml.training.params import TrainParams

log = logging.getLogger(__name__)


class NoTrainingInputError(NotFoundError):
    """A split folder without parquet files (names the folder)."""


@dataclass
class Shard:
    """One parquet file of a split (an S3 path without scheme, or a local path) and its rows."""

    path: str
    rows: int


def list_shards(split_url: str, fs=None) -> list[Shard]:
    """The parquet files under a split's folder (`s3://bucket/...` or a local folder), sorted."""
    if fs is None:
        fs = _filesystem(split_url)
    root = split_url.removeprefix("s3://").rstrip("/")
    paths = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
    if not paths:
        raise NoTrainingInputError(f"training input {split_url}: no parquet files under it")
    shards = []
    for path in paths:
        with fs.open(path, "rb") as fh:
            shards.append(Shard(path, pq.ParquetFile(fh).metadata.num_rows))
    return shards


def _filesystem(url: str):
    if url.startswith("s3://"):
        return storage.filesystem()
    import fsspec

    return fsspec.filesystem("file")


def read_shard(shard: Shard, transform: FeatureTransform, fs):
    """Read only the model's columns of one shard, straight from Arrow to tensors."""
    num_cols, cat_cols = numeric_columns(transform), categorical_columns(transform)
    with fs.open(shard.path, "rb") as fh:
        table = pq.read_table(fh, columns=[*num_cols, *cat_cols, TARGET])

    def stack(cols: list[str], dtype) -> np.ndarray:
        out = np.empty((table.num_rows, len(cols)), dtype=dtype)
        for j, c in enumerate(cols):
            out[:, j] = table.column(c).to_numpy(zero_copy_only=False)
        return out

    y = table.column(TARGET).to_numpy(zero_copy_only=False).astype(np.float32)
    return (
        torch.from_numpy(stack(num_cols, np.float32)),
        torch.from_numpy(stack(cat_cols, np.int64)),
        torch.from_numpy(y),
    )


class Batches:
    """Shuffled batches `(numeric, categorical, target)` on `device`, epoch by epoch.

    `source` is either a list of `Shard`s (read with `fs`) or a tuple of three CPU tensors
    already in memory. `in_memory=None` decides by `memory_budget_bytes`.
    """

    def __init__(
        self,
        source,
        transform: FeatureTransform,
        *,
        batch_size: int,
        device: str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        in_memory: bool | None = None,
        memory_budget_bytes: int = 2 << 30,
        fs=None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.transform, self.batch_size, self.device = transform, batch_size, device
        self.seed, self.rank, self.world_size, self.fs = seed, rank, world_size, fs
        self.pin = device.startswith("cuda")
        self._tensors = None
        if isinstance(source, tuple):
            self._tensors = source
            self.shards: list[Shard] = []
            self.rows = len(source[2])
        else:
            self.shards = list(source)
            self.rows = sum(s.rows for s in self.shards)
            width = 4 * len(transform.numeric) + 8 * len(transform.categorical) + 4
            if in_memory is None:
                in_memory = 2 * self.rows * width <= memory_budget_bytes
            if in_memory:
                parts = [read_shard(s, transform, fs) for s in self.shards]
                self._tensors = tuple(torch.cat(p) for p in zip(*parts, strict=True))
        self.streaming = self._tensors is None
        self._buffers = None
        log.info(
            "training input: %s rows, %s, batch %s, device %s",
            self.rows,
            f"streaming {len(self.shards)} shards" if self.streaming else "in memory",
            batch_size,
            device,
        )

    @property
    def samples_per_epoch(self) -> int:
        """Rows this rank sees per epoch (equal on every rank)."""
        if not self.streaming:
            return self.rows // self.world_size
        return sum(s.rows // self.world_size for s in self.shards)

    def positive_rate(self) -> float:
        """The share of positive targets over the whole split (every rank, every shard)."""
        target = self.targets()
        return float(target.sum()) / max(len(target), 1)

    def targets(self) -> np.ndarray:
        """The target column of the whole split (every rank, every shard), float64: what the
        head and the loss are fitted on (class shares, standardization)."""
        if not self.streaming:
            return self._tensors[2].cpu().numpy().astype(np.float64)
        parts = []
        for shard in self.shards:
            with self.fs.open(shard.path, "rb") as fh:
                column = pq.read_table(fh, columns=[TARGET]).column(TARGET)
            parts.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
        return np.concatenate(parts) if parts else np.zeros(0)

    def _generator(self, epoch: int):
        # A fresh generator per epoch: the order of epoch k does not depend on how many epochs
        # ran in this process, so a resumed run sees the same batches as an uninterrupted one.
        return torch.Generator().manual_seed(self.seed * 100_003 + epoch)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        gen = self._generator(epoch)
        if not self.streaming:
            yield from self._from_tensors(self._tensors, gen, reuse_buffers=True)
            return
        order = torch.randperm(len(self.shards), generator=gen).tolist()
        ahead: Queue = Queue(maxsize=1)

        def produce() -> None:
            try:
                for i in order:
                    ahead.put(read_shard(self.shards[i], self.transform, self.fs))
                ahead.put(None)
            except BaseException as exc:  # surfaced in the training thread
                ahead.put(exc)

        threading.Thread(target=produce, daemon=True, name="shard-prefetch").start()
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield from self._from_tensors(item, gen, reuse_buffers=False)

    def _from_tensors(self, tensors, gen, reuse_buffers: bool):
        n = len(tensors[2])
        share = n // self.world_size
        perm = torch.randperm(n, generator=gen)[self.rank * share : (self.rank + 1) * share]
        if reuse_buffers and self._buffers is not None and len(self._buffers[2]) == share:
            buffers = self._buffers
        else:
            buffers = tuple(
                torch.empty((share, *t.shape[1:]), dtype=t.dtype, pin_memory=self.pin)
                for t in tensors
            )
            if reuse_buffers:
                self._buffers = buffers
        if self.pin and reuse_buffers:
            torch.cuda.synchronize()  # the last epoch's async copies out of these buffers
        for src, dst in zip(tensors, buffers, strict=True):
            torch.index_select(src, 0, perm, out=dst)  # one gather per epoch, not per batch
        for start in range(0, share, self.batch_size):
            yield tuple(
                b[start : start + self.batch_size].to(self.device, non_blocking=self.pin)
                for b in buffers
            )


def split_batches(
    split_url: str,
    transform: FeatureTransform,
    **kwargs,
) -> Batches:
    """`Batches` over the parquet shards of one split of a feature set."""
    fs = _filesystem(split_url)
    return Batches(list_shards(split_url, fs), transform, fs=fs, **kwargs)


def training_data(
    manifest: dict, transform, hp: TrainParams, device: str, dist: DistContext | None = None
):
    """(train Batches, validation tensors) of a feature set (this rank's share under DDP)."""
    batches = split_batches(
        sets.split_url(manifest, "train"),
        transform,
        batch_size=hp.batch_size,
        device=device,
        seed=hp.seed,
        rank=dist.rank if dist else 0,
        world_size=dist.world_size if dist else 1,
        memory_budget_bytes=hp.memory_budget_mb << 20,
    )
    validation = frame_tensors(sets.read_split(manifest, "validation"), transform)
    return batches, validation


def feature_set_head(manifest: dict, transform: FeatureTransform) -> dict:
    """`training_head` of a feature set, its train targets read shard by shard."""
    batches = split_batches(
        sets.split_url(manifest, "train"), transform, batch_size=1, in_memory=False
    )
    return training_head(manifest, batches)


def training_head(manifest: dict, batches: Batches) -> dict:
    """The output head of a feature set's target (its manifest's `target` section), fitted on
    the train split's targets (`ml.training.heads.head_config`)."""
    return head_config(target_spec(manifest["target"]), batches.targets())


def synthetic_features(rows: int, seed: int = 0, n_numeric: int = 6, cardinality: int = 12):
    """A model-input frame with a learnable target, and its transform: for tests and benches."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    numeric = [f"x{i}" for i in range(n_numeric)]
    categorical = ["c0", "c1"]
    transform = FeatureTransform(
        numeric=numeric,
        categorical=categorical,
        derived=[],
        means={c: 0.0 for c in numeric},
        stds={c: 1.0 for c in numeric},
        vocab={c: [f"v{k}" for k in range(cardinality)] for c in categorical},
    )
    x = rng.standard_normal((rows, n_numeric)).astype("float32")
    cats = rng.integers(1, cardinality + 1, size=(rows, len(categorical)))
    effect = np.linspace(-1.0, 1.0, cardinality + 1)
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] * x[:, 2] + effect[cats[:, 0]] - 1.5
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("float32")
    frame = pd.DataFrame({f"num__{c}": x[:, i] for i, c in enumerate(numeric)})
    for j, c in enumerate(categorical):
        frame[f"cat__{c}"] = cats[:, j].astype("int64")
    frame[TARGET] = target
    return frame, transform
