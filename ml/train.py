"""Training: a PyTorch model on a feature set, logged to MLflow and registered as a new version."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml import features
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CODE_VERSION = "1"


@dataclass
class TrainParams:
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 2e-3
    hidden: int = 64
    emb_dim: int = 8
    dropout: float = 0.1
    patience: int = 3
    seed: int = 42

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainParams:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in (values or {}).items() if k in known and v is not None}
        return cls(**values)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def binary_metrics(y_true, proba) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    proba = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1 - 1e-7)
    metrics = {
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "accuracy": float(accuracy_score(y_true, proba >= 0.5)),
        "positive_rate": float(y_true.mean()) if len(y_true) else 0.0,
    }
    metrics["roc_auc"] = (
        float(roc_auc_score(y_true, proba)) if len(set(y_true)) == 2 else float("nan")
    )
    return metrics


def fit_network(
    train: pd.DataFrame, validation: pd.DataFrame, transform, params: TrainParams, on_epoch=None
):
    """Train with early stopping on validation loss; return the best network and its history."""
    import numpy as np
    import torch

    from ml.model import build_network, predict_proba, tensors

    torch.manual_seed(params.seed)
    np.random.seed(params.seed)
    device = pick_device()
    if device == "cpu":
        torch.set_num_threads(get_settings().torch_threads)
    network = build_network(
        len(transform.numeric),
        transform.cardinalities,
        hidden=params.hidden,
        emb_dim=params.emb_dim,
        dropout=params.dropout,
    ).to(device)
    numeric, categorical = tensors(train, transform)
    target = torch.from_numpy(train[features.TARGET].to_numpy(dtype=np.float32, copy=True))
    positives = float(target.sum())
    pos_weight = torch.tensor([(len(target) - positives) / max(positives, 1.0)], device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.Adam(network.parameters(), lr=params.learning_rate)
    generator = torch.Generator().manual_seed(params.seed)
    best, best_loss, stale, history = None, float("inf"), 0, []
    for epoch in range(params.epochs):
        network.train()
        started, total = time.perf_counter(), 0.0
        order = torch.randperm(len(target), generator=generator)
        for start in range(0, len(order), params.batch_size):
            idx = order[start : start + params.batch_size]
            optimizer.zero_grad(set_to_none=True)
            logits = network(numeric[idx].to(device), categorical[idx].to(device))
            loss = loss_fn(logits, target[idx].to(device))
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        network.cpu()
        val = binary_metrics(
            validation[features.TARGET], predict_proba(network, validation, transform)
        )
        network.to(device)
        row = {
            "epoch": epoch,
            "train_loss": total / max(len(target), 1),
            "val_log_loss": val["log_loss"],
            "val_roc_auc": val["roc_auc"],
            "samples_per_s": len(target) / (time.perf_counter() - started),
        }
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if val["log_loss"] < best_loss - 1e-4:
            best_loss, stale = val["log_loss"], 0
            best = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        else:
            stale += 1
            if stale >= params.patience:
                log.info(
                    "early stop after epoch %s (no validation improvement in %s epochs)",
                    epoch,
                    stale,
                )
                break
    network.cpu()
    if best is not None:
        network.load_state_dict(best)
    return network, history


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


def train(feature_ref: str, params: dict[str, Any] | None = None) -> dict:
    """Train on a committed feature set; log to MLflow; register a new model version."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    from ml import contracts
    from ml.model import (
        CONFIG_ARTIFACT,
        TRANSFORM_ARTIFACT,
        WEIGHTS_ARTIFACT,
        DelayModel,
        predict_proba,
    )

    s = get_settings()
    hp = TrainParams.from_dict(params)
    manifest = features.read_feature_manifest(feature_ref)
    contract = contracts.load_contract(manifest["dataset"])
    transform = features.load_transform(manifest)
    splits = {name: features.read_split(manifest, name) for name in features.SPLITS}
    mlflow.set_tracking_uri(s.mlflow_tracking_uri)
    mlflow.set_experiment(contract.dataset)
    with mlflow.start_run(run_name=f"train-{manifest['feature_version']}") as run:
        mlflow.log_params(
            {**asdict(hp), "device": pick_device(), "feature_version": manifest["feature_version"]}
        )
        mlflow.set_tags(
            {
                "feature_version": manifest["feature_version"],
                "contract_hash": contract.hash,
                "code_version": CODE_VERSION,
            }
        )

        def on_epoch(row: dict) -> None:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

        network, history = fit_network(
            splits["train"], splits["validation"], transform, hp, on_epoch
        )
        test = binary_metrics(
            splits["test"][features.TARGET], predict_proba(network, splits["test"], transform)
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in test.items()})
        eval_rows = features.read_split(manifest, features.EVAL_SNAPSHOT)
        example = eval_rows[transform.input_columns].head(5)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "transform.json").write_text(transform.to_json())
            config = {
                "network": {"hidden": hp.hidden, "emb_dim": hp.emb_dim, "dropout": hp.dropout}
            }
            (tmp / "config.json").write_text(json.dumps(config))
            torch.save(network.state_dict(), tmp / "weights.pt")
            (tmp / "history.json").write_text(json.dumps(history, indent=2))
            mlflow.log_artifact(str(tmp / "history.json"))
            model = DelayModel()
            signature = infer_signature(example, model_output_example(example))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                artifacts={
                    TRANSFORM_ARTIFACT: str(tmp / "transform.json"),
                    CONFIG_ARTIFACT: str(tmp / "config.json"),
                    WEIGHTS_ARTIFACT: str(tmp / "weights.pt"),
                },
                signature=signature,
                input_example=example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "pandas", "mlpipe"],
            )
        version = mlflow.register_model(info.model_uri, contract.model_name)
        client = mlflow.MlflowClient()
        for key, value in {
            "feature_version": manifest["feature_version"],
            "contract_hash": contract.hash,
            "code_version": CODE_VERSION,
            "input_batches": json.dumps(manifest["inputs"]),
            "test_roc_auc": f"{test['roc_auc']:.6f}",
        }.items():
            client.set_model_version_tag(contract.model_name, version.version, key, value)
        client.set_registered_model_alias(contract.model_name, "challenger", version.version)
    result = TrainResult(
        model_name=contract.model_name,
        model_version=str(version.version),
        run_id=run.info.run_id,
        feature_version=manifest["feature_version"],
        metrics={f"test_{k}": v for k, v in test.items()},
        eval_snapshot=manifest["eval_snapshot"],
    )
    log.info(
        "registered %s version %s (test roc_auc %.4f)",
        result.model_name,
        result.model_version,
        test["roc_auc"],
    )
    return result.to_dict()


def model_output_example(example: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"probability": [0.5] * len(example)})
