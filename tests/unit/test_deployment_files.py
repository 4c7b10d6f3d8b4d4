"""The deployment-shaped stack is well-formed and speaks the same settings as the code, offline:
`docker-compose config -q` (no skip: `make test` installs docker-compose), Dockerfiles that copy
files which exist, secrets only from files, and compose agreeing with the local stack on
buckets, pools, connections and settings names."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ml.dev.stack import auth as stack_auth
from ml.dev.stack import services as stack_services
from ml.settings import SECRET_MIN_LENGTH, ZONES, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / "compose.env.example"
MAKE_ENV = ROOT / "infra" / "make-compose-env.sh"
ENTRYPOINT = ROOT / "infra" / "entrypoint.sh"

#: Names of ours that only docker-compose itself reads (interpolation) or our entrypoint: never
#: settings of the code.
COMPOSE_ONLY = {
    "MLPIPE_IMAGE",
    "MLPIPE_IMAGE_TAG",
    "MLPIPE_BIND_ADDRESS",
    "MLPIPE_SECRETS_DIR",
    "MLPIPE_SECRET_ENV",
    "MLPIPE_SECRET_CONN",
    "MLPIPE_SECRETS_PATH",
    "MLPIPE_SECRET_MIN_LENGTH",
}
#: Services that run the project image (our code reads its settings there).
PROJECT_IMAGE = "infra/Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def setting_env_names() -> set[str]:
    """Every environment name a `Settings` field is read from."""
    names = set()
    prefix = Settings.model_config.get("env_prefix", "")
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            names.update(str(c).upper() for c in alias.choices)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def _env_names_in(text: str) -> set[str]:
    return set(re.findall(r"\b((?:MLPIPE|S3|MLFLOW)_[A-Z0-9_]+)\b", text))


def _secret_env_targets(env: dict) -> dict[str, str]:
    """MLPIPE_SECRET_ENV and MLPIPE_SECRET_CONN of a service: variable -> secret name (a
    connection's entry is `AIRFLOW_CONN_<ID>=login:secret`, the login maybe a compose variable
    with a default, `${NAME:-login}`)."""
    pairs = str(env.get("MLPIPE_SECRET_ENV", "")).split()
    conns = str(env.get("MLPIPE_SECRET_CONN", "")).split()
    return {
        **dict(pair.split("=", 1) for pair in pairs),
        **{var: spec.rsplit(":", 1)[1] for var, spec in (c.split("=", 1) for c in conns)},
    }


# --------------------------------------------------------------------------------------------
# The file is valid for docker-compose


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is not installed: `make test` installs it (target `tools`, "
            "apt-get install docker-compose); install it to run this check"
        )
    return found


def test_docker_compose_accepts_the_file_as_it_is(tmp_path):
    """No env file needed: every setting has a default, every secret is a file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLPIPE_", "COMPOSE_"))}
    done = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_docker_compose_accepts_the_generated_env_and_secrets(tmp_path):
    subprocess.run(["bash", str(MAKE_ENV), str(tmp_path)], check=True, capture_output=True)
    env = {**os.environ, "MLPIPE_SECRETS_DIR": str(tmp_path / "secrets")}
    for args in (["--env-file", str(ENV_EXAMPLE)], ["--env-file", str(tmp_path / "compose.env")]):
        done = subprocess.run(
            [_docker_compose(), "-f", str(COMPOSE), *args, "config"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    assert str(tmp_path / "secrets" / "pii_salt") in done.stdout


def test_compose_has_every_part_of_the_architecture(compose):
    services = set(compose["services"])
    assert {"minio", "postgres", "redis", "mlflow", "dask-scheduler", "dask-worker"} <= services
    assert {
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    } <= services
    assert "name" not in compose  # docker-compose 1.x rejects a top-level name


def test_gpu_worker_is_optional_and_listens_on_the_gpu_queue(compose):
    gpu = compose["services"]["airflow-worker-gpu"]
    assert gpu.get("profiles") == ["gpu"]
    assert "gpu" in " ".join(map(str, gpu.get("command", [])))


# --------------------------------------------------------------------------------------------
# Dockerfiles


def _dockerfiles(compose: dict) -> dict[Path, Path]:
    """Dockerfile -> build context, for every image compose builds."""
    found = {}
    for service in compose["services"].values():
        build = service.get("build")
        if build is None:
            continue
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        )
        found[(context / dockerfile).resolve()] = context.resolve()
    return found


def _copy_sources(dockerfile: Path) -> list[str]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    sources = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].upper() not in ("COPY", "ADD"):
            continue
        args = [p for p in parts[1:] if not p.startswith("--")]
        sources += args[:-1]
    return sources


def _ignored(context: Path, dockerfile: Path, source: str) -> bool:
    """Whether the .dockerignore BuildKit reads (<Dockerfile>.dockerignore, else the
    context's) keeps `source` out of the context (only `*` + `!path` lists are understood)."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if not ignore.exists():
        ignore = context / ".dockerignore"
    if not ignore.exists():
        return False
    lines = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("#")]
    if "*" not in lines:  # a deny list: only the excluded folders
        return any(source == ln.rstrip("/") or source.startswith(ln) for ln in lines)
    allowed = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    return not any(source == a or source.startswith(a + "/") for a in allowed)


def test_every_dockerfile_copies_files_that_exist_and_reach_the_context(compose):
    dockerfiles = _dockerfiles(compose)
    assert (ROOT / PROJECT_IMAGE).resolve() in dockerfiles
    assert (ROOT / "infra/mlflow/Dockerfile").resolve() in dockerfiles
    for dockerfile, context in dockerfiles.items():
        sources = _copy_sources(dockerfile)
        assert sources, dockerfile
        for source in sources:
            assert (context / source).exists(), f"{dockerfile}: COPY {source} (no such file)"
            assert not _ignored(context, dockerfile, source.rstrip("/")), (
                f"{dockerfile}: COPY {source}, but the .dockerignore keeps it out of the context"
            )


def test_no_build_context_can_carry_the_secrets(compose):
    for dockerfile, context in _dockerfiles(compose).items():
        secrets = (ROOT / "infra" / "secrets").resolve()
        if secrets.is_relative_to(context):
            source = str(secrets.relative_to(context))
            assert _ignored(context, dockerfile, source), f"{dockerfile}: {source} in context"


# --------------------------------------------------------------------------------------------
# Secrets


def test_no_secret_values_or_secret_variables_in_the_compose_files(compose):
    for path in (COMPOSE, ENV_EXAMPLE):
        text = path.read_text()
        assert "change-me" not in text.replace("`change-me`", ""), path
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                continue
            if re.search(r"\$\{[A-Z_]*(PASSWORD|SECRET_KEY|JWT_SECRET|FERNET)[A-Z_]*", line):
                pytest.fail(f"{path.name}: a secret from the environment, not a file: {line}")
    secretish = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|JWT_SECRET)$")
    for name, service in compose["services"].items():
        for key in service.get("environment") or {}:
            assert not secretish.search(key), f"{name}: {key} set as plain environment"


def _service_secrets(service: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}


def test_every_secret_a_service_reads_is_mounted_defined_and_generated(compose, tmp_path):
    defined = set(compose["secrets"])
    subprocess.run(["bash", str(MAKE_ENV), str(tmp_path)], check=True, capture_output=True)
    generated = {p.name for p in (tmp_path / "secrets").iterdir()}
    assert defined == generated
    for name, service in compose["services"].items():
        mounted = _service_secrets(service)
        assert mounted <= defined, name
        env = service.get("environment") or {}
        wanted = set(_secret_env_targets(env).values())
        wanted |= {m for v in env.values() for m in re.findall(r"/run/secrets/(\w+)", str(v))}
        command = " ".join(map(str, service.get("command") or []))
        healthcheck = " ".join(map(str, (service.get("healthcheck") or {}).get("test") or []))
        wanted |= set(re.findall(r"/run/secrets/(\w+)", command + healthcheck))
        if "MINIO_ROOT_PASSWORD_FILE" in env:
            wanted.add(env["MINIO_ROOT_PASSWORD_FILE"])
        assert wanted <= mounted, f"{name} reads secrets it is not given: {wanted - mounted}"


def test_task_secrets_reach_only_the_services_that_run_tasks(compose):
    for name, service in compose["services"].items():
        mounted = _service_secrets(service)
        if "minio_airflow_secret_key" in mounted:
            assert name in ("airflow-worker", "airflow-worker-gpu", "minio-init"), name
        if name in ("airflow-apiserver", "airflow-scheduler", "dask-scheduler", "mlflow"):
            assert "pii_salt" not in mounted, name


def test_placeholders_are_refused_at_start(tmp_path):
    subprocess.run(["bash", str(MAKE_ENV), str(tmp_path)], check=True, capture_output=True)
    secrets = tmp_path / "secrets"
    check = ["bash", str(MAKE_ENV), "--check", str(tmp_path)]
    assert subprocess.run(check, capture_output=True).returncode == 0
    run = {
        **os.environ,
        "MLPIPE_SECRETS_PATH": str(secrets),
        "MLPIPE_SECRET_ENV": "MLPIPE_PII_SALT=pii_salt",
    }
    ok = subprocess.run(
        ["bash", str(ENTRYPOINT), "bash", "-c", 'echo "${#MLPIPE_PII_SALT}"'],
        env=run,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0 and int(ok.stdout) >= SECRET_MIN_LENGTH, ok.stderr
    for bad, why in (("change-me", "placeholder"), ("x" * (SECRET_MIN_LENGTH - 1), "shorter")):
        (secrets / "redis_password").write_text(bad)
        refused = subprocess.run(
            ["bash", str(ENTRYPOINT), "true"], env=run, capture_output=True, text=True, cwd=tmp_path
        )
        assert refused.returncode == 65 and "redis_password" in refused.stderr, refused.stderr
        assert why in refused.stderr
        checked = subprocess.run(check, capture_output=True, text=True)
        assert checked.returncode != 0 and "redis_password" in checked.stderr


def test_secret_connections_become_airflow_connections(tmp_path):
    """The entrypoint turns `AIRFLOW_CONN_<ID>=login:secret` into a connection whose password is
    the secret file: `aws` for the S3 identities, `http` for the MLflow users."""
    subprocess.run(["bash", str(MAKE_ENV), str(tmp_path)], check=True, capture_output=True)
    secrets = tmp_path / "secrets"
    run = {
        **os.environ,
        "MLPIPE_SECRETS_PATH": str(secrets),
        "MLPIPE_SECRET_CONN": "AIRFLOW_CONN_MLPIPE_S3_TRAIN=train:minio_train_secret_key "
        "AIRFLOW_CONN_MLPIPE_MLFLOW_TRAIN=mlpipe-train:mlflow_train_password",
    }
    shown = subprocess.run(
        ["bash", str(ENTRYPOINT), "bash", "-c", "env | grep ^AIRFLOW_CONN_MLPIPE_"],
        env=run,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    conns = {
        k: json.loads(v) for k, v in (line.split("=", 1) for line in shown.stdout.splitlines())
    }
    assert conns["AIRFLOW_CONN_MLPIPE_S3_TRAIN"] == {
        "conn_type": "aws",
        "login": "train",
        "password": (secrets / "minio_train_secret_key").read_text().strip(),
    }
    assert conns["AIRFLOW_CONN_MLPIPE_MLFLOW_TRAIN"] == {
        "conn_type": "http",
        "login": "mlpipe-train",
        "password": (secrets / "mlflow_train_password").read_text().strip(),
    }


def test_secret_minimum_is_the_same_everywhere():
    assert (
        f"min_length=${{MLPIPE_SECRET_MIN_LENGTH:-{SECRET_MIN_LENGTH}}}" in ENTRYPOINT.read_text()
    )
    assert f"MIN_LENGTH = {SECRET_MIN_LENGTH}" in MAKE_ENV.read_text()


# --------------------------------------------------------------------------------------------
# Compose and the local stack agree


def test_every_zone_of_the_settings_gets_a_bucket(compose):
    buckets = compose["x-zone-buckets"]
    assert set(buckets) == {f"MLPIPE_BUCKET_{zone.upper()}" for zone in ZONES}
    defaults = Settings(_env_file=None)
    for zone in ZONES:
        default = re.fullmatch(r"\$\{\w+:-([\w.-]+)\}", buckets[f"MLPIPE_BUCKET_{zone.upper()}"])
        assert default and default.group(1) == defaults.bucket(zone), zone
    script = (ROOT / "infra" / "minio" / "bootstrap.sh").read_text()
    zones = re.search(r"ZONES=\(([^)]*)\)", script).group(1).split()
    assert set(zones) == set(ZONES)
    mlflow = " ".join(compose["services"]["mlflow"]["command"])
    assert "s3://${MLPIPE_BUCKET_MLFLOW:-mlflow}/artifacts" in mlflow  # as the local stack


def _pools_used_by_dags() -> set[str]:
    text = " ".join(p.read_text() for p in (ROOT / "dags").glob("*.py"))
    return set(re.findall(r"\bpool=\"(\w+)\"", text))


def test_compose_and_the_local_stack_create_every_pool_the_dags_use():
    used = _pools_used_by_dags()
    assert {"gpu", "promotion"} <= used
    init = (ROOT / "infra/airflow/init.sh").read_text()
    compose_pools = set(re.findall(r"^airflow pools set (\w+)", init, re.M))
    local = (ROOT / "ml/dev/stack/bootstrap.py").read_text()
    local_pools = set(re.findall(r'"pools",\s*"set",\s*"(\w+)"', local))
    local_pools |= set(re.findall(r'"name":\s*"(\w+)"', local))
    assert used <= compose_pools, used - compose_pools
    assert used <= local_pools, used - local_pools


def test_compose_and_the_local_stack_define_the_same_airflow_connections(compose, settings_env):
    used = set()
    for folder in ("dags", "ml", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"conn_id\s*=\s*[\"'](\w+)[\"']", path.read_text()))
    env = compose["x-airflow-env"]
    in_compose = {
        k.removeprefix("AIRFLOW_CONN_").lower() for k in env if k.startswith("AIRFLOW_CONN_")
    }
    for name in ("airflow-worker", "airflow-worker-gpu"):
        worker_env = compose["services"][name].get("environment") or {}
        in_compose |= {
            k.removeprefix("AIRFLOW_CONN_").lower()
            for k in worker_env
            if k.startswith("AIRFLOW_CONN_")
        }
        in_compose |= {
            k.removeprefix("AIRFLOW_CONN_").lower()
            for k in _secret_env_targets(worker_env)
            if k.startswith("AIRFLOW_CONN_")
        }
    local = {
        k.removeprefix("AIRFLOW_CONN_").lower()
        for k in stack_services.airflow_env(settings_env)
        if k.startswith("AIRFLOW_CONN_")
    }
    # Secure mode: one S3 connection per stage identity (a user per policy file; `airflow` and
    # `mlflow` are process keys, not connections), as `ml.dev.stack.iam.connection_env` makes.
    policies = {p.stem for p in (ROOT / "infra" / "minio" / "policies").glob("*.json")}
    local |= {f"mlpipe_s3_{name}" for name in policies - {"airflow", "mlflow"}}
    # and one MLflow user per stage that writes to MLflow (ml.dev.stack.auth)
    secure = settings_env.model_copy(update={"secure": True})
    local |= {
        k.removeprefix("AIRFLOW_CONN_").lower() for k in stack_auth.mlflow_connection_env(secure)
    }
    assert in_compose == local
    assert used <= in_compose, used - in_compose


@pytest.fixture
def settings_env(tmp_path) -> Settings:
    return Settings(_env_file=None, state_dir=tmp_path / "state")


def test_every_setting_name_compose_passes_is_one_the_code_reads(compose):
    known = setting_env_names()
    for path in (COMPOSE, ENV_EXAMPLE):
        names = _env_names_in(path.read_text()) - COMPOSE_ONLY
        # MLflow's own client and server variables are MLflow's, not ours
        ours = {n for n in names if n.startswith(("MLPIPE_", "S3_"))}
        assert ours <= known, f"{path.name}: not settings: {sorted(ours - known)}"
    for name, service in compose["services"].items():
        build = service.get("build")
        if not (isinstance(build, dict) and build.get("dockerfile") == PROJECT_IMAGE):
            continue
        env = service.get("environment") or {}
        for key in [*env, *_secret_env_targets(env)]:
            if key.startswith("MLPIPE_") and key not in COMPOSE_ONLY:
                assert key in known, f"{name}: {key} is no setting"


def test_compose_gives_its_processes_what_the_local_stack_gives_its_own(compose, settings_env):
    """The names of `Settings.service_env()` (the local stack's processes) that matter in a
    deployment are set for every compose service that runs our code."""
    local = set(settings_env.service_env())
    needed = local - {
        "MLPIPE_DROP_DIR",  # default: under the state folder
        "MLPIPE_TORCH_THREADS",  # per worker kind, below
        "MLFLOW_S3_ENDPOINT_URL",  # artifacts go through the MLflow server in compose
    }
    for name in ("airflow-worker", "dask-worker"):
        env = compose["services"][name]["environment"]
        given = set(env) | set(_secret_env_targets(env))
        assert needed <= given | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, (
            f"{name} lacks {sorted(needed - given)}"
        )
        assert "MLPIPE_TORCH_THREADS" in env
        assert "MLPIPE_PII_SALT" in _secret_env_targets(env)


def test_dask_in_compose_is_tls_only(compose):
    assert compose["x-pipeline-env"]["DASK_SCHEDULER_ADDRESS"].startswith("tls://")
    tls = compose["x-dask-tls"]
    assert tls["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    scheduler = compose["services"]["dask-scheduler"]["command"]
    worker = compose["services"]["dask-worker"]["command"]
    assert "--tls-ca-file" in scheduler and "tls" in scheduler
    assert worker[2].startswith("tls://") and "--tls-cert" in worker
    for name in ("dask-scheduler", "dask-worker", "airflow-worker", "airflow-worker-gpu"):
        volumes = compose["services"][name]["volumes"]
        assert "dask-certs:/opt/mlpipe/certs:ro" in volumes, name


def test_compose_airflow_uses_the_fab_auth_manager(compose):
    env = compose["x-airflow-env"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    assert not any("SIMPLE_AUTH" in k for k in env)
    init = (ROOT / "infra/airflow/init.sh").read_text()
    for role in ("Admin", "Op", "Viewer"):
        assert re.search(rf"ensure_user .* {role} airflow_\w+_password", init), role
    assert "apache-airflow-providers-fab==" in (ROOT / PROJECT_IMAGE).read_text()
