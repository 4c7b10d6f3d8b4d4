"""Training: the PyTorch model on a feature set, logged to MLflow, registered as a new version.

One Airflow task instance gets one MLflow run and at most one model version, however many
attempts: the run is found again by the task's key (a tag), training resumes from the last
checkpoint in object storage, and a version already registered by an earlier attempt is
returned instead of registering another.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.errors import RefusedError
from ml.features import sets
from ml.features.derived import TARGET
from ml.features.transform import FeatureTransform
from ml.metrics import binary_metrics
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

    from ml.training.checkpoint import CheckpointStore
    from ml.training.distributed import DistContext

log = logging.getLogger(__name__)

CODE_VERSION = "2"
TASK_KEY_TAG = "mlpipe_task_key"
VERSION_TAG = "mlpipe_model_version"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class TrainingDivergedError(RefusedError):
    """The loss became NaN or infinite: training stops rather than registering garbage."""


@dataclass
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

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainParams:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in (values or {}).items() if k in known and v is not None}
        hp = cls(**values)
        if hp.precision not in PRECISIONS:
            raise ValueError(f"train param precision={hp.precision!r}: use one of {PRECISIONS}")
        for name in ("epochs", "batch_size", "hidden", "layers", "emb_dim", "nproc_per_node"):
            if int(getattr(hp, name)) < 1:
                raise ValueError(f"train param {name}={getattr(hp, name)!r}: must be >= 1")
        if not hp.learning_rate > 0:
            raise ValueError(f"train param learning_rate={hp.learning_rate!r}: must be > 0")
        return hp

    def network_config(self) -> dict:
        return {
            "hidden": self.hidden,
            "layers": self.layers,
            "emb_dim": self.emb_dim,
            "dropout": self.dropout,
        }


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast_dtype(device: str, precision: str):
    """The autocast dtype for a device and the `precision` param (None: full fp32)."""
    import torch

    if not device.startswith("cuda") or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- the training loop ------------------------------------------------------------------------


def fit_network(
    batches,
    validation: tuple,
    transform,
    hp: TrainParams,
    *,
    device: str | None = None,
    dist: DistContext | None = None,
    checkpoint: CheckpointStore | None = None,
    on_epoch=None,
    describe_input: str = "training input",
):
    """Train with early stopping on validation log loss; return (best network on CPU, history).

    `batches` is an `ml.training.loader.Batches`; `validation` is (numeric, categorical, target) CPU
    tensors. With a `checkpoint` store, every epoch is checkpointed (rank 0) and training resumes
    from the committed checkpoint. `on_epoch(row)` runs on rank 0 after each new epoch.
    """
    import torch

    from ml.training import checkpoint as ckpt
    from ml.training.model import build_network, predict_tensors

    device = device or pick_device()
    is_main = dist is None or dist.is_main
    seed_everything(hp.seed)
    if device == "cpu":
        torch.set_num_threads(get_settings().torch_threads)
    network = build_network(
        len(transform.numeric), transform.cardinalities, **hp.network_config()
    ).to(device)
    model = dist.wrap(network, device) if dist and dist.world_size > 1 else network
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay
    )
    amp = autocast_dtype(device, hp.precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    positive_rate = batches.positive_rate()
    weight = (1 - positive_rate) / max(positive_rate, 1e-6) if hp.pos_weight else 1.0
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([weight], device=device))
    # Weighting positives by w shifts the learned logit by log(w): subtract it when predicting
    # so probabilities stay calibrated (and log loss comparable with an unweighted model).
    offset = math.log(weight)

    start, best, best_loss, stale, history = 0, None, float("inf"), 0, []
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        best, best_loss, stale = state["best"], state["best_loss"], state["stale"]
        history, start = list(state["history"]), state["epoch"] + 1
        log.info("resuming from checkpoint epoch %s (%s)", state["epoch"], checkpoint.url)
    if state is not None and stale >= hp.patience:
        start = hp.epochs  # the earlier attempt had already stopped early

    val_num, val_cat, val_y = validation
    for epoch in range(start, hp.epochs):
        started = time.perf_counter()
        total, seen = run_epoch(
            model, batches.epoch(epoch), optimizer, loss_fn, scaler, amp, device
        )
        train_loss = float(total) / max(seen, 1)  # one device sync per epoch
        if not math.isfinite(train_loss):
            raise TrainingDivergedError(
                f"training diverged at epoch {epoch}: train loss is {train_loss} on {describe_input} "
                f"(learning_rate={hp.learning_rate}, precision={hp.precision}); check the input "
                "for NaN/inf values or lower the learning rate"
            )
        elapsed = time.perf_counter() - started
        if dist and dist.world_size > 1:
            dist.sync_buffers(network)
        with _shifted(network, offset):
            proba = predict_tensors(network, val_num, val_cat)
        val = binary_metrics(val_y.numpy(), proba)
        if dist and dist.world_size > 1:
            # Ranks must agree on early stopping; rank 0's view decides.
            val["log_loss"], val["roc_auc"] = dist.broadcast_floats(
                [val["log_loss"], val["roc_auc"]]
            )
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_log_loss": val["log_loss"],
            "val_roc_auc": val["roc_auc"],
            "samples_per_s": seen * (dist.world_size if dist else 1) / elapsed,
            "epoch_s": elapsed,
        }
        history.append(row)
        if val["log_loss"] < best_loss - 1e-4:
            best_loss, stale = val["log_loss"], 0
            best = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        else:
            stale += 1
        if checkpoint is not None and is_main:
            checkpoint.save(
                epoch,
                {
                    "model": network.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": ckpt.rng_state(),
                    "best": best,
                    "best_loss": best_loss,
                    "stale": stale,
                    "history": history,
                },
            )
        if on_epoch and is_main:
            on_epoch(row)
        if stale >= hp.patience:
            log.info("early stop after epoch %s (no validation improvement in %s)", epoch, stale)
            break
    network.cpu()
    if best is not None:
        network.load_state_dict(best)
    _shift_bias(network, -offset)
    return network, history


def run_epoch(model, batches, optimizer, loss_fn, scaler, amp, device: str):
    """One pass of optimizer steps; returns (summed loss as a device tensor, samples seen)."""
    import torch

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


class _shifted:
    """Temporarily subtract `offset` from the network's output bias (prior correction)."""

    def __init__(self, network, offset: float) -> None:
        self.network, self.offset = network, offset

    def __enter__(self):
        _shift_bias(self.network, -self.offset)

    def __exit__(self, *exc):
        _shift_bias(self.network, self.offset)


def _shift_bias(network, delta: float) -> None:
    import torch

    if delta:
        with torch.no_grad():
            network.mlp[-1].bias += delta


# --- data of a feature set --------------------------------------------------------------------


def training_data(manifest: dict, transform, hp: TrainParams, device: str, dist=None):
    """(train Batches, validation tensors) of a feature set."""
    from ml.training.loader import frame_tensors, split_batches

    batches = split_batches(
        f"{manifest['ref']}/train",
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


# --- MLflow -----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    model_name: str
    model_version: str
    run_id: str
    feature_version: str
    metrics: dict[str, float]
    eval_snapshot: str

    def to_dict(self) -> dict:
        return asdict(self)


def find_or_create_run(client, experiment_id: str, key: str, run_name: str, tags: dict) -> str:
    """The run of this task instance (found by its key tag), created on the first attempt."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.{TASK_KEY_TAG} = '{key}'", max_results=2
    )
    if found:
        log.info("continuing MLflow run %s of task key %s", found[0].info.run_id, key)
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_name, tags={**tags, TASK_KEY_TAG: key})
    return run.info.run_id


@dataclass
class TaskRun:
    """A training task's feature set and its MLflow run (found again by a retry of the task)."""

    manifest: dict
    contract: Any
    transform: FeatureTransform
    key: str
    client: Any
    run_id: str


def open_task_run(
    feature_ref: str, task_instance: dict | None, role: str, name: str, tags: dict | None = None
) -> TaskRun:
    """Read the feature set, then find or create the `role` run (named `<name>-<version>`) of
    this task instance in the dataset's MLflow experiment: the set-up of `train` and of
    `ml.training.baseline.train_baseline`."""
    import uuid

    import mlflow

    from ml import contracts
    from ml.training.checkpoint import task_key

    manifest = sets.read_feature_manifest(feature_ref)
    contract = contracts.load_contract(manifest["dataset"])
    transform = sets.load_transform(manifest)
    key = task_key(**task_instance) if task_instance else f"adhoc-{uuid.uuid4().hex[:16]}"
    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    experiment = mlflow.set_experiment(contract.dataset)
    client = mlflow.MlflowClient()
    version = manifest["feature_version"]
    run_id = find_or_create_run(
        client,
        experiment.experiment_id,
        key,
        f"{name}-{version}",
        {"feature_version": version, "contract_hash": contract.hash, **(tags or {}), "role": role},
    )
    return TaskRun(manifest, contract, transform, key, client, run_id)


def log_epoch(client, run_id: str, row: dict, logged_steps: set[int]) -> None:
    """One epoch's metrics in one `log_batch` call; a step logged before is not logged again."""
    from mlflow.entities import Metric

    if row["epoch"] in logged_steps:
        return
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, int(row["epoch"])) for k, v in row.items() if k != "epoch"]
    client.log_batch(run_id, metrics=metrics)
    logged_steps.add(int(row["epoch"]))


def _logged_steps(client, run_id: str) -> set[int]:
    return {m.step for m in client.get_metric_history(run_id, "train_loss")}


def train(
    feature_ref: str,
    params: dict[str, Any] | None = None,
    *,
    task_instance: dict | None = None,
    baseline: dict | None = None,
) -> dict:
    """Train on a committed feature set; log to MLflow; register a new model version.

    `task_instance` (`dag_id`, `run_id`, `task_id`, `map_index`) makes the call idempotent per
    Airflow task instance: a retry continues the same MLflow run from the last checkpoint and
    registers at most one version. `baseline` (the result of `ml.training.baseline.train_baseline`)
    records the network's test ROC AUC minus the baseline's.
    """
    import mlflow

    from ml.training.checkpoint import CheckpointStore

    hp = TrainParams.from_dict(params)
    task = open_task_run(
        feature_ref, task_instance, "network", "train", {"code_version": CODE_VERSION}
    )
    manifest, contract, transform = task.manifest, task.contract, task.transform
    key, client, run_id = task.key, task.client, task.run_id
    done = client.get_run(run_id).data.tags.get(VERSION_TAG)
    if done:
        log.info("task key %s already registered version %s: nothing to do", key, done)
        return _result_of(client, run_id, contract, manifest)
    store = CheckpointStore.for_task(contract.dataset, key)
    with mlflow.start_run(run_id=run_id):
        if not client.get_run(run_id).data.params:
            mlflow.log_params(
                {**asdict(hp), "device": pick_device(), "feature_ref": manifest["ref"]}
            )
        mlflow.set_tag("checkpoint", store.url)
        attempt = len(client.get_metric_history(run_id, "attempt_start_epoch"))
        start = (store.latest() or {"epoch": -1})["epoch"] + 1
        mlflow.log_metric("attempt_start_epoch", start, step=attempt)
        if hp.nproc_per_node > 1:
            from ml.training.distributed import launch

            network, history = launch(feature_ref, hp, run_id, store.url)
        else:
            network, history = _fit_here(client, run_id, manifest, transform, hp, store)
        logged = _logged_steps(client, run_id)
        for row in history:  # epochs checkpointed by an attempt that died before logging them
            log_epoch(client, run_id, row, logged)
        return _finish(
            client, run_id, network, history, manifest, contract, transform, hp, baseline
        )


def _fit_here(client, run_id, manifest, transform, hp, store):
    device = pick_device()
    batches, validation = training_data(manifest, transform, hp, device)
    logged = _logged_steps(client, run_id)
    network, history = fit_network(
        batches,
        validation,
        transform,
        hp,
        device=device,
        checkpoint=store,
        on_epoch=lambda row: log_epoch(client, run_id, row, logged),
        describe_input=f"{manifest['ref']}/train",
    )
    return network, history


def _finish(client, run_id, network, history, manifest, contract, transform, hp, baseline):
    import mlflow

    from ml.training import figures
    from ml.training.model import predict_proba

    test_frame = sets.read_split(manifest, "test")
    proba = predict_proba(network, test_frame, transform)
    y_test = test_frame[TARGET].to_numpy()
    test = binary_metrics(y_test, proba)
    metrics = {f"test_{k}": v for k, v in test.items()}
    if baseline:
        metrics["baseline_test_roc_auc"] = baseline["metrics"]["test_roc_auc"]
        metrics["test_roc_auc_minus_baseline"] = (
            test["roc_auc"] - baseline["metrics"]["test_roc_auc"]
        )
        mlflow.set_tag("baseline_run_id", baseline["run_id"])
    mlflow.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        for path in figures.training_figures(history, y_test, proba, Path(tmp)):
            mlflow.log_artifact(str(path), artifact_path="figures")
        (Path(tmp) / "history.json").write_text(json.dumps(history, indent=2))
        mlflow.log_artifact(str(Path(tmp) / "history.json"))
    info = log_pyfunc(network, transform, hp.network_config(), input_example(manifest, transform))
    version = register(client, run_id, info.model_uri, contract, manifest, metrics)
    mlflow.set_tag(VERSION_TAG, version)
    log.info(
        "registered %s version %s (test roc_auc %.4f)",
        contract.model_name,
        version,
        test["roc_auc"],
    )
    return TrainResult(
        model_name=contract.model_name,
        model_version=version,
        run_id=run_id,
        feature_version=manifest["feature_version"],
        metrics=metrics,
        eval_snapshot=manifest["eval_snapshot"],
    ).to_dict()


def input_example(manifest: dict, transform) -> pd.DataFrame:
    """A few raw rows of the feature set's eval snapshot, as the model takes them."""
    eval_rows = sets.read_split(manifest, sets.EVAL_SNAPSHOT)
    return eval_rows[transform.input_columns].head(5)


def log_pyfunc(network, transform, network_config: dict, example, extra_config=None):
    """Log the network + fitted transform as a pyfunc taking raw rows, with a signature and
    `example` (raw rows: `input_example`) as its input example."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    from ml.training.model import CONFIG_ARTIFACT, TRANSFORM_ARTIFACT, WEIGHTS_ARTIFACT, DelayModel

    example = example[transform.input_columns].head(5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "transform.json").write_text(transform.to_json())
        config = {"network": network_config, **(extra_config or {})}
        (tmp / "config.json").write_text(json.dumps(config))
        torch.save(network.state_dict(), tmp / "weights.pt")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=DelayModel(),
            artifacts={
                TRANSFORM_ARTIFACT: str(tmp / "transform.json"),
                CONFIG_ARTIFACT: str(tmp / "config.json"),
                WEIGHTS_ARTIFACT: str(tmp / "weights.pt"),
            },
            signature=infer_signature(example, model_output_example(example)),
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "pandas", "mlpipe"],
        )


def register(client, run_id, model_uri, contract, manifest, metrics, extra_tags=None) -> str:
    """Register a version (alias `challenger`) unless this run already registered one."""
    import mlflow

    existing = client.search_model_versions(
        f"name = '{contract.model_name}' and run_id = '{run_id}'"
    )
    variant = (extra_tags or {}).get("variant", "full")
    existing = [v for v in existing if v.tags.get("variant", "full") == variant]
    if existing:
        version = str(existing[0].version)
        log.info("run %s already registered version %s: reusing it", run_id, version)
    else:
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
    for key, value in tags.items():
        client.set_model_version_tag(contract.model_name, version, key, value)
    if variant == "full":
        client.set_registered_model_alias(contract.model_name, "challenger", version)
    return version


def _result_of(client, run_id, contract, manifest) -> dict:
    run = client.get_run(run_id)
    return TrainResult(
        model_name=contract.model_name,
        model_version=run.data.tags[VERSION_TAG],
        run_id=run_id,
        feature_version=manifest["feature_version"],
        metrics={k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "baseline"))},
        eval_snapshot=manifest["eval_snapshot"],
    ).to_dict()


def model_output_example(example: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"probability": [0.5] * len(example)})
