"""Registered model versions as every later stage reads them: the aliases and what they point
at, a version's URI, and the feature set a version was trained on. Alias moves are `ml.registry`'s.
"""

from __future__ import annotations

from typing import Any

from ml import tracking
from ml.assets import CHALLENGER, CHAMPION, PREVIOUS  # noqa: F401  (the aliases, read here by every later stage)
from ml.errors import NotFoundError
from ml.features import sets
from ml.settings import get_settings


class ModelVersionNotFoundError(NotFoundError):
    """An alias or a version's tag the registry does not have (names the model and version)."""


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(tracking.client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def version_uri(model_name: str, version: str) -> str:
    """The MLflow URI of one version (never of an alias: a run resolves the alias once)."""
    return f"models:/{model_name}/{version}"


def feature_set_ref(dataset: str, feature_version: str) -> str:
    """Where a feature set of a dataset is committed."""
    return f"s3://{get_settings().bucket('features')}/{dataset}/{feature_version}"


def trained_feature_set(dataset: str, model_name: str, version: str) -> dict[str, Any]:
    """The manifest of the feature set a version was trained on (its `feature_version` tag)."""
    mv = tracking.client().get_model_version(model_name, version)
    fv = mv.tags.get("feature_version")
    if not fv:
        raise ModelVersionNotFoundError(
            f"{model_name} version {version} has no feature_version tag"
        )
    return sets.read_feature_manifest(feature_set_ref(dataset, fv))
