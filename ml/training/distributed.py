"""Multi-GPU training through `torchrun` (DDP): NCCL on GPUs, gloo on CPU.

`launch` starts `torchrun --nproc_per_node N -m ml.training.distributed ...` from the training task;
each worker runs the same `ml.training.fit.fit_network` on its share of every shard; rank 0 logs
the epochs to the task's MLflow run, writes the checkpoints, and hands the trained weights back.
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
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from ml import tracking
from ml.errors import TransientError
from ml.features import sets
from ml.identity import identity_env
from ml.training.checkpoint import CheckpointStore
from ml.training.ddp import DistContext, setup
from ml.training.fit import fit_network
from ml.training.heads import LEGACY_HEAD, n_outputs
from ml.training.loader import Batches, synthetic_features, training_data, training_head
from ml.training.network import network_from_config
from ml.training.params import TrainParams
from ml.training.tensors import frame_tensors

log = logging.getLogger(__name__)


class DistributedTrainingError(TransientError):
    """torchrun ended with an error; a retry resumes from the last checkpoint."""


def launch(feature_ref: str, hp: TrainParams, run_id: str, checkpoint_url: str):
    """Run training under torchrun (one process per GPU); return (network on CPU, history)."""
    out = Path(tempfile.mkdtemp(prefix="mlpipe-ddp-"))
    argv = [
        *torchrun_command(hp.nproc_per_node),
        "--feature-ref",
        feature_ref,
        "--params",
        json.dumps(asdict(hp)),
        "--run-id",
        run_id,
        "--checkpoint",
        checkpoint_url,
        "--out",
        str(out),
    ]
    log.info("launching %s", " ".join(argv))
    try:
        # the ranks act with this task's S3 identity (a child does not inherit the block)
        done = subprocess.run(argv, check=False, env={**os.environ, **identity_env()})
        if done.returncode != 0:
            raise DistributedTrainingError(
                f"torchrun training of {feature_ref} failed with exit code {done.returncode} "
                "(the worker logs are above; a retry resumes from the last checkpoint)"
            )
        transform = sets.load_transform(sets.read_feature_manifest(feature_ref))
        head = json.loads((out / "head.json").read_text()) if (out / "head.json").exists() else None
        outputs = n_outputs(head or LEGACY_HEAD)
        network = network_from_config(transform, {**hp.network_config(), "outputs": outputs})
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
    try:
        _fit_this_rank(args, hp, ctx)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


def _fit_this_rank(args: argparse.Namespace, hp: TrainParams, ctx: DistContext) -> None:
    """This rank's fit; its figures into `rank-<n>.json`, and rank 0's weights and history."""
    out, device = Path(args.out), ctx.device()
    if args.synthetic:
        batches, validation, transform = _synthetic(args.synthetic, hp, ctx, device)
        store, on_epoch, head = None, None, None
    else:
        batches, validation, transform, store, on_epoch = _feature_set(args, hp, ctx, device)
        head = training_head(sets.read_feature_manifest(args.feature_ref), batches)
    network, history = fit_network(
        batches,
        validation,
        transform,
        hp,
        device=device,
        dist=ctx,
        checkpoint=store,
        on_epoch=on_epoch,
        head=head,
    )
    checksum = float(sum(p.double().sum() for p in network.parameters()))
    figures = {
        "rank": ctx.rank,
        "world_size": ctx.world_size,
        "samples_per_epoch": batches.samples_per_epoch,
        "param_checksum": checksum,
        "epochs": len(history),
    }
    (out / f"rank-{ctx.rank}.json").write_text(json.dumps(figures))
    if ctx.is_main:
        torch.save(network.state_dict(), out / "weights.pt")
        (out / "history.json").write_text(json.dumps(history))
        if head is not None:
            (out / "head.json").write_text(json.dumps(head))


def _synthetic(rows: int, hp: TrainParams, ctx: DistContext, device: str):
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


def _feature_set(args: argparse.Namespace, hp: TrainParams, ctx: DistContext, device: str):
    manifest = sets.read_feature_manifest(args.feature_ref)
    transform = sets.load_transform(manifest)
    batches, validation = training_data(manifest, transform, hp, device, dist=ctx)
    store = CheckpointStore(args.checkpoint) if args.checkpoint else None
    on_epoch = None
    if args.run_id and ctx.is_main:
        client = tracking.client()
        logged = tracking.logged_steps(client, args.run_id, "train_loss")

        def on_epoch(row: dict) -> None:
            tracking.log_step(client, args.run_id, row, logged)

    return batches, validation, transform, store, on_epoch


if __name__ == "__main__":
    sys.exit(main())
