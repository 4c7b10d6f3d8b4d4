"""The input pipeline: shards streamed or loaded once, every row once per epoch, even DDP shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.errors import NotFoundError
from ml.training.loader import list_shards, split_batches
from ml.training.tensors import frame_tensors

pytestmark = pytest.mark.unit


def test_shards_stream_every_row_once_per_epoch_and_ranks_share_evenly(data, tmp_path):
    frame, _, transform = data
    frame = frame.assign(row=np.arange(len(frame), dtype="float32"))
    for i in range(4):
        frame.iloc[i * 1000 : (i + 1) * 1000].to_parquet(
            tmp_path / f"part-{i}.parquet", index=False
        )
    shards = list_shards(str(tmp_path))
    assert sum(s.rows for s in shards) == len(frame)
    streamed = split_batches(str(tmp_path), transform, batch_size=300, in_memory=False)
    loaded = split_batches(str(tmp_path), transform, batch_size=300, in_memory=True)
    assert streamed.streaming and not loaded.streaming
    for batches in (streamed, loaded):
        # x0 values identify rows: every row exactly once per epoch, in a different order.
        seen = [torch.cat([b[0][:, 0] for b in batches.epoch(e)]) for e in (0, 1)]
        for s in seen:
            assert torch.equal(
                torch.sort(s).values, torch.sort(frame_tensors(frame, transform)[0][:, 0]).values
            )
        assert not torch.equal(seen[0], seen[1])
    assert streamed.positive_rate() == pytest.approx(frame["target"].mean())
    ranks = [
        split_batches(
            str(tmp_path), transform, batch_size=128, rank=r, world_size=2, in_memory=False
        )
        for r in (0, 1)
    ]
    counts = [sum(len(b[2]) for b in r.epoch(0)) for r in ranks]
    assert counts[0] == counts[1] == ranks[0].samples_per_epoch == len(frame) // 2
    firsts = [torch.cat([b[0][:, 0] for b in r.epoch(0)]) for r in ranks]
    assert not set(firsts[0].tolist()) & set(firsts[1].tolist())  # disjoint shares


def test_a_split_without_parquet_files_is_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="no parquet files"):
        list_shards(str(tmp_path))
