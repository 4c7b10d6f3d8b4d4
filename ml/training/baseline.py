"""The baseline a practitioner tries first on tabular data: gradient-boosted trees.

A scikit-learn `HistGradientBoostingClassifier` (binary and multiclass targets) or
`HistGradientBoostingRegressor` (regression, squared error on the column's own scale) on the
same features and splits as the network
(numeric inputs as they are, categorical codes as native categories where the vocabulary fits
in `max_bins`, as ordinal codes otherwise), early-stopped on the validation split, logged as a
sibling MLflow run (tag `role=baseline`) in the dataset's experiment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import mlflow

from ml.features import sets
from ml.features.derived import TARGET
from ml.features.target import MULTICLASS, REGRESSION, target_spec
from ml.metrics import PRIMARY_METRIC, kind_metrics
from ml.training.result import BaselineResult
from ml.training.task_run import TASK_KEY_TAG, open_task_run
from ml.training.tensors import categorical_columns, numeric_columns

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MAX_BINS = 255


@dataclass
class BaselineParams:
    max_iter: int = 500
    learning_rate: float = 0.1
    max_leaf_nodes: int = 63
    min_samples_leaf: int = 40
    l2_regularization: float = 0.0
    seed: int = 42

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> BaselineParams:
        prefix = "baseline_"
        known = set(cls.__dataclass_fields__)
        picked = {
            k.removeprefix(prefix): v
            for k, v in (values or {}).items()
            if k.startswith(prefix) and k.removeprefix(prefix) in known and v is not None
        }
        if "seed" not in picked and (values or {}).get("seed") is not None:
            picked["seed"] = values["seed"]
        return cls(**picked)


def design(frame: pd.DataFrame, transform) -> pd.DataFrame:
    """The trees' input: `num__*` and `cat__*` columns of a model-input frame."""
    return frame[numeric_columns(transform) + categorical_columns(transform)]


def fit_baseline(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    transform,
    params: BaselineParams,
    kind: str = "binary",
):
    """Fit the trees on the train split, early-stopped on the validation split."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    native = [n <= MAX_BINS for n in transform.cardinalities]
    mask = [False] * len(transform.numeric) + native
    trees = HistGradientBoostingRegressor if kind == REGRESSION else HistGradientBoostingClassifier
    cast = float if kind == REGRESSION else int
    model = trees(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        categorical_features=np.array(mask),
        early_stopping=True,
        n_iter_no_change=20,
        random_state=params.seed,
    )
    model.fit(
        design(train, transform),
        train[TARGET].to_numpy().astype(cast),
        X_val=design(validation, transform),
        y_val=validation[TARGET].to_numpy().astype(cast),
    )
    return model


def baseline_proba(model, frame: pd.DataFrame, transform):
    return model.predict_proba(design(frame, transform))[:, 1]


def baseline_predict(model, frame: pd.DataFrame, transform, spec: dict[str, Any]):
    """What the trees give for a target kind: the positive class's probability (binary), the
    probabilities of every class of the spec (multiclass: a class absent from train gets 0),
    or the value (regression)."""
    import numpy as np

    if spec["kind"] == REGRESSION:
        return model.predict(design(frame, transform))
    proba = model.predict_proba(design(frame, transform))
    if spec["kind"] != MULTICLASS:
        return proba[:, 1]
    out = np.zeros((len(frame), len(spec["classes"])))
    out[:, model.classes_.astype(int)] = proba
    return out


def train_baseline(
    feature_ref: str, params: dict[str, Any] | None = None, *, task_instance: dict | None = None
) -> BaselineResult:
    """Fit and evaluate the baseline on a feature set; log it as a sibling MLflow run.

    With `task_instance`, a retry finds the run of an earlier attempt: a finished one is reused.
    """
    hp = BaselineParams.from_dict(params)
    task = open_task_run(feature_ref, task_instance, "baseline", "baseline")
    manifest, transform = task.manifest, task.transform
    key, client, run_id = task.key, task.client, task.run_id
    spec = target_spec(manifest["target"])
    primary = PRIMARY_METRIC[spec["kind"]]
    run = client.get_run(run_id)
    if run.info.status == "FINISHED" and f"test_{primary}" in run.data.metrics:
        log.info("baseline run %s of task key %s already finished: reusing it", run_id, key)
        metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
        return BaselineResult(run_id, metrics, run.data.tags[TASK_KEY_TAG])
    splits = {name: sets.read_split(manifest, name) for name in sets.SPLITS}
    with mlflow.start_run(run_id=run_id):
        if not run.data.params:
            mlflow.log_params({f"baseline_{k}": v for k, v in asdict(hp).items()})
        started = time.perf_counter()
        model = fit_baseline(splits["train"], splits["validation"], transform, hp, spec["kind"])
        fit_s = time.perf_counter() - started
        test = kind_metrics(
            spec["kind"],
            splits["test"][TARGET],
            baseline_predict(model, splits["test"], transform, spec),
        )
        metrics = {f"test_{k}": v for k, v in test.items()}
        mlflow.log_metrics({**metrics, "fit_s": fit_s, "n_iter": float(model.n_iter_)})
    log.info("baseline test %s %.4f (run %s)", primary, test[primary], run_id)
    return BaselineResult(run_id, metrics, key)
