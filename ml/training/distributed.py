"""Multi-GPU training through `torchrun` (DDP): NCCL on GPUs, gloo on CPU.

`launch` starts `torchrun --nproc_per_node N -m ml.training.distributed ...` from the training task; each
worker runs the same `ml.training.train.fit_network` on its share of every shard; rank 0 logs the epochs
to the task's MLflow run, writes the checkpoints, and hands the trained weights back.
`python -m ml.training.distributed --synthetic ROWS --out DIR` trains on generated data (the CPU test).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> str:
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"

    def wrap(self, network, device: str):
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if device.startswith("cuda") else None
        return DistributedDataParallel(network, device_ids=ids)

    def sync_buffers(self, network) -> None:
        """Rank 0's BatchNorm statistics everywhere, so every rank evaluates the same model."""
        import torch.distributed as dist

        for buffer in network.buffers():
            dist.broadcast(buffer.data, src=0)

    def broadcast_floats(self, values: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device())
        dist.broadcast(tensor, src=0)
        return tensor.cpu().tolist()


def setup() -> DistContext:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    import torch
    import torch.distributed as dist

    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k not in os.environ]
    if missing:
        raise RuntimeError(f"ml.training.distributed: {missing} not set: start it through torchrun")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    ctx = DistContext(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        backend=backend,
    )
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend=backend)
    return ctx


def launch(feature_ref: str, hp, run_id: str, checkpoint_url: str):
    """Run training under torchrun (one process per GPU); return (network on CPU, history)."""
    import torch

    from ml.features import sets
    from ml.training.model import build_network

    out = Path(tempfile.mkdtemp(prefix="mlpipe-ddp-"))
    argv = [
        *torchrun_command(hp.nproc_per_node),
        "--feature-ref",
        feature_ref,
        "--params",
        json.dumps(hp.__dict__),
        "--run-id",
        run_id,
        "--checkpoint",
        checkpoint_url,
        "--out",
        str(out),
    ]
    log.info("launching %s", " ".join(argv))
    try:
        done = subprocess.run(argv, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"torchrun training of {feature_ref} failed with exit code {done.returncode} "
                "(the worker logs are above; a retry resumes from the last checkpoint)"
            )
        transform = sets.load_transform(sets.read_feature_manifest(feature_ref))
        network = build_network(
            len(transform.numeric), transform.cardinalities, **hp.network_config()
        )
        network.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
        history = json.loads((out / "history.json").read_text())
        return network, history
    finally:
        shutil.rmtree(out, ignore_errors=True)


def torchrun_command(nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "ml.training.distributed",
    ]


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist

    from ml.training.train import TrainParams, fit_network

    parser = argparse.ArgumentParser(prog="python -m ml.training.distributed")
    parser.add_argument("--feature-ref")
    parser.add_argument("--synthetic", type=int, help="train on this many generated rows")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--run-id")
    parser.add_argument("--checkpoint")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank%(process)d %(message)s")
    hp = TrainParams.from_dict(json.loads(args.params))
    ctx = setup()
    out = Path(args.out)
    try:
        device = ctx.device()
        if args.synthetic:
            batches, validation, transform = _synthetic(args.synthetic, hp, ctx, device)
            store, on_epoch = None, None
        else:
            batches, validation, transform, store, on_epoch = _feature_set(args, hp, ctx, device)
        network, history = fit_network(
            batches,
            validation,
            transform,
            hp,
            device=device,
            dist=ctx,
            checkpoint=store,
            on_epoch=on_epoch,
        )
        checksum = float(sum(p.double().sum() for p in network.parameters()))
        (out / f"rank-{ctx.rank}.json").write_text(
            json.dumps(
                {
                    "rank": ctx.rank,
                    "world_size": ctx.world_size,
                    "samples_per_epoch": batches.samples_per_epoch,
                    "param_checksum": checksum,
                    "epochs": len(history),
                }
            )
        )
        if ctx.is_main:
            torch.save(network.state_dict(), out / "weights.pt")
            (out / "history.json").write_text(json.dumps(history))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


def _synthetic(rows: int, hp, ctx: DistContext, device: str):
    from ml.training.loader import Batches, frame_tensors, synthetic_features

    frame, transform = synthetic_features(rows, seed=hp.seed)
    val_frame, _ = synthetic_features(max(rows // 4, 100), seed=hp.seed + 1)
    batches = Batches(
        frame_tensors(frame, transform),
        transform,
        batch_size=hp.batch_size,
        device=device,
        seed=hp.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    return batches, frame_tensors(val_frame, transform), transform


def _feature_set(args, hp, ctx: DistContext, device: str):
    import mlflow

    from ml.features import sets
    from ml.training.checkpoint import CheckpointStore
    from ml.training.train import _logged_steps, log_epoch, training_data

    manifest = sets.read_feature_manifest(args.feature_ref)
    transform = sets.load_transform(manifest)
    batches, validation = training_data(manifest, transform, hp, device, dist=ctx)
    store = CheckpointStore(args.checkpoint) if args.checkpoint else None
    on_epoch = None
    if args.run_id and ctx.is_main:
        client = mlflow.MlflowClient()
        logged = _logged_steps(client, args.run_id)

        def on_epoch(row: dict) -> None:
            log_epoch(client, args.run_id, row, logged)

    return batches, validation, transform, store, on_epoch


if __name__ == "__main__":
    sys.exit(main())
