"""Registered model versions as every later stage reads them: the aliases and what they point
at, a version's URI, and the feature set a version was trained on. Alias moves are `ml.registry`'s.
"""

from __future__ import annotations

from typing import Any

from ml import tracking
from ml.assets import CHALLENGER, CHAMPION, PREVIOUS  # noqa: F401  (the aliases, read here by every later stage)
from ml.errors import NotFoundError, TransientError
from ml.features import sets


class ModelVersionNotFoundError(NotFoundError):
    """An alias or a version's tag the registry does not have (names the model and version)."""


class RegistryUnavailable(TransientError):
    """The registry did not answer, or answered with an error other than "does not exist"."""


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the registry answers that the alias (or the
    model) does not exist. Any other failure (server down, 5xx, time-out) is not "no alias": it
    raises `RegistryUnavailable`, so no decision is taken on an answer that was not given."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import (
        INVALID_PARAMETER_VALUE,
        PERMISSION_DENIED,
        RESOURCE_DOES_NOT_EXIST,
        ErrorCode,
    )

    mlflow_client = tracking.client()
    try:
        return str(mlflow_client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        # The SQL store answers a missing alias with INVALID_PARAMETER_VALUE, a missing model
        # with RESOURCE_DOES_NOT_EXIST; with basic auth, the alias of a model that does not
        # exist is PERMISSION_DENIED (no oracle of names). The model itself then decides.
        not_found = {
            ErrorCode.Name(INVALID_PARAMETER_VALUE),
            ErrorCode.Name(RESOURCE_DOES_NOT_EXIST),
            ErrorCode.Name(PERMISSION_DENIED),
        }
        if exc.error_code not in not_found:
            raise _unavailable(model_name, alias, exc) from exc
    try:  # "not found": confirmed by the model's own list of aliases
        aliases = mlflow_client.get_registered_model(model_name).aliases
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise _unavailable(model_name, alias, exc) from exc
    return str(aliases[alias]) if alias in aliases else None


def _unavailable(model_name: str, alias: str, exc: Exception) -> RegistryUnavailable:
    code = getattr(exc, "error_code", type(exc).__name__)
    return RegistryUnavailable(
        f"registry: alias {alias!r} of model {model_name!r} could not be read "
        f"({code}: {getattr(exc, 'message', exc)}); not taken as 'no alias'"
    )


def version_uri(model_name: str, version: str) -> str:
    """The MLflow URI of one version (never of an alias: a run resolves the alias once)."""
    return f"models:/{model_name}/{version}"


def trained_feature_set(dataset: str, model_name: str, version: str) -> dict[str, Any]:
    """The manifest of the feature set a version was trained on (its `feature_version` tag)."""
    mv = tracking.client().get_model_version(model_name, version)
    fv = mv.tags.get("feature_version")
    if not fv:
        raise ModelVersionNotFoundError(
            f"{model_name} version {version} has no feature_version tag"
        )
    return sets.read_feature_manifest(sets.feature_set_ref(dataset, fv))
