"""Typed settings for every part of the pipeline, read from the environment or a `.env` file.

Built lazily by `get_settings()`, never at import time, so DAG files and tests can change the
environment before anything reads it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ml.errors import ConfigurationError

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

ZONES = ("raw", "validated", "quarantine", "features", "predictions", "reports", "mlflow")


class UnknownZone(ConfigurationError):
    """A storage zone that is not one of `ZONES`."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every endpoint, credential and location the pipeline uses.

    Standard names (`S3_ENDPOINT_URL`, `AWS_*`, `MLFLOW_TRACKING_URI`, `DASK_SCHEDULER_ADDRESS`)
    are honoured as they are; everything of ours is prefixed `MLPIPE_`.
    """

    model_config = SettingsConfigDict(env_prefix="MLPIPE_", env_file=".env", extra="ignore")

    # Object storage (any S3 API endpoint: moto locally, MinIO in deployment).
    s3_endpoint_url: str = Field(
        "http://127.0.0.1:9000", validation_alias=_env("S3_ENDPOINT_URL", "MLPIPE_S3_ENDPOINT_URL")
    )
    aws_access_key_id: SecretStr | None = Field(None, validation_alias=_env("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=_env("AWS_SECRET_ACCESS_KEY")
    )
    aws_region: str = Field("us-east-1", validation_alias=_env("AWS_DEFAULT_REGION"))
    # None: start a local S3 API server exactly when the endpoint is on loopback.
    local_s3: bool | None = None

    bucket_raw: str = "raw"
    bucket_validated: str = "validated"
    bucket_quarantine: str = "quarantine"
    bucket_features: str = "features"
    bucket_predictions: str = "predictions"
    bucket_reports: str = "reports"
    bucket_mlflow: str = "mlflow"

    # MLflow.
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", validation_alias=_env("MLFLOW_TRACKING_URI")
    )
    mlflow_database_url: str | None = None  # None: SQLite in the state folder

    # Dask.
    dask_scheduler_address: str = Field(
        "tcp://127.0.0.1:8786", validation_alias=_env("DASK_SCHEDULER_ADDRESS")
    )
    dask_workers: int = 2
    dask_threads_per_worker: int = 1
    dask_worker_memory_limit: str = "3GiB"

    # Airflow.
    airflow_api_url: str = "http://127.0.0.1:8080"
    airflow_database_url: str | None = None  # None: SQLite in the state folder
    airflow_parallelism: int = 4

    # Local stack: pid files, logs, SQLite files, Airflow home.
    state_dir: Path = Path(".mlpipe")
    # Root of `drop_folder` sources (a contract's `source.path` is relative to it);
    # None: `<state_dir>/drop`.
    drop_dir: Path | None = None

    # Secret salt for hashing PII columns before the validated zone (required when a contract
    # hashes PII).
    pii_salt: SecretStr | None = None

    # Torch threads per training process (the cores are shared with Dask and Airflow).
    torch_threads: int = 2
    # Slots of the Airflow `gpu` pool that training tasks run in; None: one per GPU (min. 1).
    gpu_pool_slots: int | None = None

    # Modules that register feature hooks (`@ml.features.derived.feature_hook(name)`), comma
    # separated (env MLPIPE_FEATURE_HOOKS); hooks installed as entry points of the group
    # `mlpipe.features` need nothing here. A hook's module must be importable where the model
    # trains and where it scores.
    feature_hooks: str = ""

    @property
    def feature_hook_modules(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.feature_hooks.split(",") if m.strip())

    def bucket(self, zone: str) -> str:
        """The bucket name of a storage zone (`raw`, `validated`, ...)."""
        if zone not in ZONES:
            raise UnknownZone(f"unknown storage zone {zone!r}; zones are {', '.join(ZONES)}")
        return getattr(self, f"bucket_{zone}")

    @property
    def buckets(self) -> list[str]:
        return [self.bucket(z) for z in ZONES]

    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def drop_path(self) -> Path:
        return (self.drop_dir or self.state_dir / "drop").expanduser().resolve()

    @property
    def starts_local_s3(self) -> bool:
        if self.local_s3 is not None:
            return self.local_s3
        return (urlsplit(self.s3_endpoint_url).hostname or "") in LOOPBACK_HOSTS

    def s3_storage_options(self) -> dict:
        """Keyword arguments for s3fs / fsspec (`storage_options=` of pandas and Dask)."""
        return {
            "key": _secret(self.aws_access_key_id),
            "secret": _secret(self.aws_secret_access_key),
            "client_kwargs": {
                "endpoint_url": self.s3_endpoint_url,
                "region_name": self.aws_region,
            },
        }

    def service_env(self) -> dict[str, str]:
        """Environment for child processes (Airflow tasks, Dask workers, MLflow server)."""
        env = {
            "S3_ENDPOINT_URL": self.s3_endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_DEFAULT_REGION": self.aws_region,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "DASK_SCHEDULER_ADDRESS": self.dask_scheduler_address,
            "MLPIPE_STATE_DIR": str(self.state_path),
            "MLPIPE_AIRFLOW_API_URL": self.airflow_api_url,
            "MLPIPE_TORCH_THREADS": str(self.torch_threads),
            "MLPIPE_DROP_DIR": str(self.drop_path),
        }
        if self.feature_hooks:
            env["MLPIPE_FEATURE_HOOKS"] = self.feature_hooks
        if self.pii_salt is not None:
            env["MLPIPE_PII_SALT"] = self.pii_salt.get_secret_value()
        for zone in ZONES:
            env[f"MLPIPE_BUCKET_{zone.upper()}"] = self.bucket(zone)
        if self.aws_access_key_id is not None:
            env["AWS_ACCESS_KEY_ID"] = self.aws_access_key_id.get_secret_value()
        if self.aws_secret_access_key is not None:
            env["AWS_SECRET_ACCESS_KEY"] = self.aws_secret_access_key.get_secret_value()
        return env


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (after the environment changed, e.g. in tests)."""
    get_settings.cache_clear()
