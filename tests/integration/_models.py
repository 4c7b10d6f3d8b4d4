"""Shared set-up of the training, promotion and scoring tests: a week of validated flights, its
feature set, trained versions, and copies of them under a test's own model name (so each test
module has its own aliases and audit log on the shared package-scoped servers); and a small
synthetic feature set under a dataset and model of its own."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ml import contracts, ingest, storage, tracking
from ml.features import build, sets
from ml.features.derived import TARGET
from ml.training.loader import synthetic_features
from ml.training.params import TrainParams
from ml.training.result import TrainResult
from ml.training.run import train
from ml.validation.batch import validate_batch

DAYS = ingest.days_between("2013-01-01", "2013-01-07")
REPO = Path(__file__).resolve().parents[2]


def validated_week() -> None:
    """Ingest and validate the week once (a day already validated is left as it is)."""
    for dataset in ("flights", "weather"):
        done = storage.latest_batches("validated", dataset)
        for day in DAYS:
            if f"date={day}" not in done:
                raw = ingest.ingest_partition(dataset, day)
                validate_batch(raw.ref, dataset)
    for dataset in ("planes", "airports"):  # the lookups' snapshots
        if "snapshot" not in storage.latest_batches("validated", dataset):
            validate_batch(ingest.ingest_partition(dataset, DAYS[-1]).ref, dataset)


def feature_set() -> sets.FeatureSet:
    validated_week()
    return build.build_features("flights")


def trained(feature_ref: str, **params) -> TrainResult:
    """A version trained with these params on this feature set: an existing one (e.g. from
    test_pipeline, same servers) is reused, else one is trained."""
    manifest = sets.read_feature_manifest(feature_ref)
    fv = manifest["feature_version"]
    wanted = {k: str(v) for k, v in asdict(TrainParams.from_dict(params)).items()}
    client = tracking.client()
    for mv in client.search_model_versions("name='flights_delay'"):
        if mv.tags.get("feature_version") != fv:
            continue
        logged = client.get_run(mv.run_id).data.params
        if all(logged.get(k) == v for k, v in wanted.items()):
            return TrainResult(
                model_name=mv.name,
                version=str(mv.version),
                run_id=mv.run_id,
                feature_version=fv,
                eval_snapshot=manifest["eval_snapshot"],
            )
    return train(feature_ref, params)


def copy_version(result: TrainResult, to_model: str) -> str:
    """A new version of `to_model` with the artifacts and lineage tags of a trained version."""
    client = tracking.client()
    src = client.get_model_version(result.model_name, result.version)
    mv = client.copy_model_version(f"models:/{src.name}/{src.version}", to_model)
    for key, value in src.tags.items():
        if not key.startswith("promotion."):
            client.set_model_version_tag(to_model, mv.version, key, value)
    return str(mv.version)


def contract_as(folder: Path, dataset: str) -> str:
    """The flights contract under another dataset and model name (`<dataset>_delay`): its own
    experiment and registered model. Returns the contract file's path."""
    text = (REPO / "data_contracts" / "flights.yaml").read_text()
    text = text.replace("dataset: flights", f"dataset: {dataset}", 1)
    text = text.replace("name: flights_delay", f"name: {dataset}_delay", 1)
    path = folder / f"{dataset}.yaml"
    path.write_text(text)
    return str(path)


def synthetic_feature_set(
    dataset: str, name: str, contract_file: str, rows: int, nan_in_train: bool = False
) -> str:
    """A committed feature set of generated rows in the `features` bucket, in the layout
    `ml.features` writes (its eval snapshot holds raw rows, as the model takes them)."""
    fs = storage.filesystem()
    base = f"features/{dataset}/{name}"
    frames = {}
    for i, split in enumerate(("train", "validation", "test")):
        frame, transform = synthetic_features(rows if split == "train" else rows // 4, seed=i)
        if nan_in_train and split == "train":
            frame.loc[5, "num__x0"] = np.nan
        frames[split] = frame
        fs.pipe_file(f"{base}/{split}/part.0.parquet", frame.to_parquet(index=False))
    fs.pipe_file(
        f"{base}/eval/part.0.parquet", raw_rows(frames["test"], transform).to_parquet(index=False)
    )
    fs.pipe_file(f"{base}/transform.json", transform.to_json().encode())
    manifest = {
        "dataset": contract_file,
        "feature_version": name,
        "ref": f"s3://{base}",
        "inputs": [f"s3://validated/{dataset}/{name}"],
        "eval_snapshot": f"s3://{base}/eval",
        "transform": f"s3://{base}/transform.json",
        # As `build_features` writes it: the contract's target, in the `target` column.
        "target": {**contracts.load_contract(contract_file).target, "column": TARGET},
    }
    fs.pipe_file(f"{base}/{storage.MANIFEST}", json.dumps(manifest).encode())
    return f"s3://{base}"


def raw_rows(frame: pd.DataFrame, transform) -> pd.DataFrame:
    """The raw rows a model-input frame of `synthetic_features` was transformed from."""
    raw = pd.DataFrame({c: frame[f"num__{c}"].astype("float64") for c in transform.numeric})
    for c in transform.categorical:
        raw[c] = [transform.vocab[c][k - 1] for k in frame[f"cat__{c}"]]
    return raw
