"""Shared set-up of the promotion and scoring tests: a week of validated flights, its feature
set, trained versions, and copies of them under a test's own model name (so each test module
has its own aliases and audit log on the shared package-scoped servers)."""

from __future__ import annotations

from ml import ingest, storage, tracking
from ml.features import build, sets
from ml.training import train
from ml.validation.batch import validate_batch

DAYS = ingest.days_between("2013-01-01", "2013-01-07")


def validated_week() -> None:
    """Ingest and validate the week once (a day already validated is left as it is)."""
    for dataset in ("flights", "weather"):
        done = storage.latest_batches("validated", dataset)
        for day in DAYS:
            if f"date={day}" not in done:
                raw = ingest.ingest_partition(dataset, day)
                validate_batch(raw.ref, dataset)


def feature_set() -> sets.FeatureSet:
    validated_week()
    return build.build_features("flights")


def trained(feature_ref: str, **params) -> dict:
    """A version trained with these params on this feature set: an existing one (e.g. from
    test_pipeline, same servers) is reused, else one is trained."""
    from dataclasses import asdict

    manifest = sets.read_feature_manifest(feature_ref)
    fv = manifest["feature_version"]
    wanted = {k: str(v) for k, v in asdict(train.TrainParams.from_dict(params)).items()}
    client = tracking.client()
    for mv in client.search_model_versions("name='flights_delay'"):
        if mv.tags.get("feature_version") != fv:
            continue
        logged = client.get_run(mv.run_id).data.params
        if all(logged.get(k) == v for k, v in wanted.items()):
            return {
                "model_name": mv.name,
                "model_version": str(mv.version),
                "run_id": mv.run_id,
                "feature_version": fv,
                "eval_snapshot": manifest["eval_snapshot"],
            }
    return train.train(feature_ref, params)


def copy_version(result: dict, to_model: str) -> str:
    """A new version of `to_model` with the artifacts and lineage tags of a trained version."""
    client = tracking.client()
    src = client.get_model_version(result["model_name"], result["model_version"])
    mv = client.copy_model_version(f"models:/{src.name}/{src.version}", to_model)
    for key, value in src.tags.items():
        if not key.startswith("promotion."):
            client.set_model_version_tag(to_model, mv.version, key, value)
    return str(mv.version)
