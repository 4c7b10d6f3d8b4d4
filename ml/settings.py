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
from ml.identity import S3Identity, active_identity, dask_identity

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

# The Airflow plugin's pages and MLflow webhook receiver, under Airflow's API server.
PLUGIN_PREFIX = "/mlpipe"
WEBHOOK_PATH = f"{PLUGIN_PREFIX}/mlflow/webhook"

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

    # The MLflow UI people open from Airflow's extra links (None: the tracking URI).
    mlflow_ui_url: str | None = None
    # MLflow webhooks (alias moves -> audit record + scoring, `plugins/`): the HMAC secret both
    # sides share (None: no webhook; the local stack makes one), and the URL MLflow posts to
    # (None: the Airflow plugin's endpoint under `airflow_api_url`).
    mlflow_webhook_secret: SecretStr | None = None
    mlflow_webhook_url: str | None = None

    # Alerts to people (`ml.alerts`: a task that failed for good, a missed deadline): a generic
    # webhook (JSON POST) and/or mail over SMTP; none set: no alerts.
    alert_webhook_url: str | None = None
    alert_smtp_host: str | None = None
    alert_smtp_port: int = 25
    alert_mail_from: str = "mlpipe@localhost"
    alert_mail_to: str | None = None  # comma-separated addresses
    # A scoring run not done this long after it was queued raises a deadline alert (the daily
    # 06:00 run: predictions by 07:00).
    scoring_deadline_s: int = 3600
    # How often a scheduled ingest run looks again for its partition's data while it waits
    # (the contract's `schedule.wait`); between looks it holds no worker slot.
    arrival_poke_s: int = 300
    # At most this many partitions per ingest or validate task (None: a chunk is a month of
    # days, a day of hours, a year of months; 1: one task per partition).
    chunk_max_partitions: int | None = None

    # Torch threads per training process (the cores are shared with Dask and Airflow).
    torch_threads: int = 2
    # Slots of the Airflow `gpu` pool that training tasks run in; None: one per GPU (min. 1).
    gpu_pool_slots: int | None = None

    # --- Authentication and secrets -----------------------------------------------------------
    # Local stack in `secure` mode (env MLPIPE_SECURE), run as deployed: the S3 server enforces
    # the policies of infra/minio/policies, each stage and service with its own keys
    # (ml.dev.stack.secure_s3), and Airflow and MLflow have real users (ml.dev.stack.auth).
    secure: bool = False
    # The Airflow REST API user of the CLI and the demo (a JWT from `POST /auth/token`); none:
    # `GET /auth/token`, which only an all-admins SimpleAuthManager answers.
    airflow_username: str | None = None
    airflow_password: SecretStr | None = None
    # The MLflow basic-auth admin of the local secure stack (password: generated and kept in the
    # state folder when not set).
    mlflow_admin_username: str = "admin"
    mlflow_admin_password: SecretStr | None = None
    # What MLflow clients authenticate with (MLflow's own names).
    mlflow_tracking_username: str | None = Field(
        None, validation_alias=_env("MLFLOW_TRACKING_USERNAME")
    )
    mlflow_tracking_password: SecretStr | None = Field(
        None, validation_alias=_env("MLFLOW_TRACKING_PASSWORD")
    )
    # Version of `pii_salt`, recorded in validated manifests (the salt itself never is): bump it
    # when the salt is rotated, so hashes made with different salts are never joined unknowingly.
    pii_salt_version: str = "1"

    # Bounds on one input (a day's file, object or HTTP body), overridable per contract
    # (`limits:`): bytes as delivered, rows, and bytes once decoded (parquet metadata). Checked
    # before decoding where the format tells (file size, Content-Length, parquet metadata) and
    # while streaming otherwise; see `ml.sources.limits`.
    max_input_bytes: int = 256 * 2**20
    max_input_rows: int = 5_000_000
    max_input_decoded_bytes: int = 2 * 2**30
    # HTTP sources: hosts that may be fetched although they resolve to a loopback, private,
    # link-local or reserved address (e.g. `["127.0.0.1"]` for a test server; JSON list in
    # MLPIPE_HTTP_ALLOWED_PRIVATE_HOSTS), and hosts a redirect may lead to besides the URL's own
    # host (MLPIPE_HTTP_REDIRECT_HOSTS). Default: none of either.
    http_allowed_private_hosts: list[str] = Field(default_factory=list)
    http_redirect_hosts: list[str] = Field(default_factory=list)

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

    @property
    def mlflow_ui(self) -> str:
        """The MLflow UI's base URL (no trailing slash)."""
        return (self.mlflow_ui_url or self.mlflow_tracking_uri).rstrip("/")

    @property
    def webhook_url(self) -> str:
        """Where MLflow posts its webhooks: the Airflow plugin's receiver unless configured."""
        return self.mlflow_webhook_url or f"{self.airflow_api_url.rstrip('/')}{WEBHOOK_PATH}"

    def s3_storage_options(self, *, dask: bool = False) -> dict:
        """Keyword arguments for s3fs / fsspec (`storage_options=` of pandas and Dask).

        The keys are those of the identity in use (`ml.identity.use_identity`), else the
        settings' own; `dask=True`: for I/O that runs on the Dask workers (their identity).
        """
        identity = dask_identity() if dask else active_identity()
        key, secret = self.s3_keys(identity)
        return {
            "key": key,
            "secret": secret,
            "client_kwargs": {
                "endpoint_url": self.s3_endpoint_url,
                "region_name": self.aws_region,
            },
        }

    def s3_keys(self, identity: S3Identity | None = None) -> tuple[str | None, str | None]:
        """(access key, secret key) of `identity`, or the settings' own when None."""
        if identity is not None:
            return identity.access_key_id, identity.secret_access_key
        return _secret(self.aws_access_key_id), _secret(self.aws_secret_access_key)

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
        if self.mlflow_ui_url:
            env["MLPIPE_MLFLOW_UI_URL"] = self.mlflow_ui_url
        if self.mlflow_webhook_secret is not None:
            env["MLPIPE_MLFLOW_WEBHOOK_SECRET"] = self.mlflow_webhook_secret.get_secret_value()
        if self.feature_hooks:
            env["MLPIPE_FEATURE_HOOKS"] = self.feature_hooks
        env["MLPIPE_SCORING_DEADLINE_S"] = str(self.scoring_deadline_s)
        env["MLPIPE_ARRIVAL_POKE_S"] = str(self.arrival_poke_s)
        if self.chunk_max_partitions:
            env["MLPIPE_CHUNK_MAX_PARTITIONS"] = str(self.chunk_max_partitions)
        # MLflow logs through the task's own logging, not a stderr handler of its own (Airflow
        # shows a task's stderr as ERROR lines), and draws no progress bars.
        env["MLFLOW_CONFIGURE_LOGGING"] = "false"
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        if self.alert_webhook_url or self.alert_smtp_host:  # where alerts go (ml.alerts)
            for name in ("alert_webhook_url", "alert_smtp_host", "alert_mail_to"):
                if getattr(self, name):
                    env[f"MLPIPE_{name.upper()}"] = getattr(self, name)
            env["MLPIPE_ALERT_SMTP_PORT"] = str(self.alert_smtp_port)
            env["MLPIPE_ALERT_MAIL_FROM"] = self.alert_mail_from
        if self.pii_salt is not None:
            env["MLPIPE_PII_SALT"] = self.pii_salt.get_secret_value()
        for zone in ZONES:
            env[f"MLPIPE_BUCKET_{zone.upper()}"] = self.bucket(zone)
        if self.aws_access_key_id is not None:
            env["AWS_ACCESS_KEY_ID"] = self.aws_access_key_id.get_secret_value()
        if self.aws_secret_access_key is not None:
            env["AWS_SECRET_ACCESS_KEY"] = self.aws_secret_access_key.get_secret_value()
        env["MLPIPE_PII_SALT_VERSION"] = self.pii_salt_version
        if self.mlflow_tracking_username and self.mlflow_tracking_password is not None:
            env["MLFLOW_TRACKING_USERNAME"] = self.mlflow_tracking_username
            env["MLFLOW_TRACKING_PASSWORD"] = self.mlflow_tracking_password.get_secret_value()
        return env

    def check_secrets(self) -> None:
        """Refuse placeholder secrets: a value from an example file (`change-me`, ...), and, once
        the deployment is real (`secure`, or S3 not the local server), one shorter than
        `SECRET_MIN_LENGTH`. Unset secrets are not checked (the code that needs one says so)."""
        min_length = SECRET_MIN_LENGTH if self.secure or not self.starts_local_s3 else 1
        bad = []
        for name, env_name in SECRET_SETTINGS.items():
            value = getattr(self, name)
            if value is None:
                continue
            problem = secret_problem(value.get_secret_value(), min_length)
            if problem:
                bad.append(f"{env_name} ({name}) {problem}")
        if bad:
            raise PlaceholderSecret(
                "refusing to start with placeholder secrets: "
                + "; ".join(bad)
                + " (set real values: random, at least "
                + f"{SECRET_MIN_LENGTH} characters)"
            )


#: Our secrets and the environment variable each is read from.
SECRET_SETTINGS = {
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "pii_salt": "MLPIPE_PII_SALT",
    "airflow_password": "MLPIPE_AIRFLOW_PASSWORD",
    "mlflow_admin_password": "MLPIPE_MLFLOW_ADMIN_PASSWORD",
    "mlflow_tracking_password": "MLFLOW_TRACKING_PASSWORD",
}
#: The shortest secret accepted (infra/make-compose-env.sh and infra/entrypoint.sh use the same).
SECRET_MIN_LENGTH = 16
#: Values of example files, never real secrets (compared without case, `_`/`-` ignored).
PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "placeholder", "xxx", "todo"}


class PlaceholderSecret(ConfigurationError):
    """A secret still holds an example value or is too short."""


def secret_problem(value: str, min_length: int = SECRET_MIN_LENGTH) -> str | None:
    """Why a secret value is a placeholder, or None when it is acceptable."""
    folded = value.strip().lower().replace("_", "-")
    if folded in PLACEHOLDERS or folded.replace("-", "") in PLACEHOLDERS:
        return f"holds the placeholder {value!r}"
    if folded.startswith("change-me") or folded.startswith("changeme"):
        return "holds a placeholder (starts with 'change-me')"
    if len(value) < min_length:
        return f"is {len(value)} characters long, shorter than the minimum {min_length}"
    return None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (after the environment changed, e.g. in tests)."""
    get_settings.cache_clear()
