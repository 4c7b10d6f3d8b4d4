"""Lifecycle of the local stack (`mlpipe stack up|status|down`) on free ports and a temp state.

The e2e tests use the whole stack; these check starting, idempotence, recovery of a crashed
service, failure reports, and that `down` leaves no process behind (Airflow task runners
included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from ml.dev.stack import layout, lifecycle, services
from ml.settings import Settings

pytestmark = pytest.mark.integration

CORE = ["s3", "mlflow", "dask"]

SLEEPER_DAG = """
import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def mlpipe_stack_sleeper():
    @task
    def nap():
        import json
        import sys
        import time
        from pathlib import Path

        # What this task process holds before it imports anything (the executor preloads).
        Path(__file__).with_name("modules.json").write_text(json.dumps(sorted(sys.modules)))
        time.sleep(600)

    nap()
    # BashOperator runs its command in a session of its own: the hardest child to catch.
    BashOperator(task_id="bash_nap", bash_command="sleep 600")


mlpipe_stack_sleeper()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mlpipe-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mlpipe-test-secret")
    s = Settings(
        _env_file=None,
        S3_ENDPOINT_URL=f"http://127.0.0.1:{_free_port()}",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{_free_port()}",
        DASK_SCHEDULER_ADDRESS=f"tcp://127.0.0.1:{_free_port()}",
        AWS_ACCESS_KEY_ID="mlpipe-test",
        AWS_SECRET_ACCESS_KEY="mlpipe-test-secret",
        airflow_api_url=f"http://127.0.0.1:{_free_port()}",
        state_dir=tmp_path / "state",
        # Embedded databases, whatever the ambient environment says: a stack under test must
        # never share another stack's Airflow or MLflow database.
        mlflow_database_url=None,
        airflow_database_url=None,
        dask_workers=2,
        dask_worker_memory_limit="1GiB",
        airflow_parallelism=4,
    )
    yield s
    lifecycle.down(s)  # whatever a failed test left running


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # a busy 2-core machine
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: dict, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # a busy 2-core machine
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _pids(s: Settings) -> dict[str, int]:
    return {row.name: row.pid for row in lifecycle.status(s) if row.pid}


def _family(pids: dict[str, int]) -> dict[int, str]:
    """Every live process of the given services: members of their sessions and descendants."""
    sessions = set(pids.values())
    found: dict[int, str] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getsid(proc.pid) in sessions or proc.pid in sessions:
                found[proc.pid] = " ".join(proc.info["cmdline"] or [])
        except OSError:
            continue
    for pid in sessions:
        try:
            for child in psutil.Process(pid).children(recursive=True):
                found[child.pid] = " ".join(child.cmdline())
        except psutil.Error:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _assert_nothing_left(s: Settings, before: dict[int, str]) -> None:
    left = {pid: cmd for pid, cmd in before.items() if _alive(pid)}
    assert not left, f"processes left after down: {left}"
    assert not list((s.state_path / "run").glob("*.pid")), "pid files left after down"
    ps = subprocess.run(
        ["ps", "-eo", "pid,pgid,cmd"], capture_output=True, text=True, check=True
    ).stdout
    mentions = [line for line in ps.splitlines() if str(s.state_path) in line]
    assert not mentions, f"processes mentioning the state folder after down: {mentions}"
    assert all(row.state == "stopped" for row in lifecycle.status(s))


def _buckets_with_versioning(s: Settings) -> dict[str, str]:
    from ml.storage import minio_client

    client = minio_client(s)
    return {b.name: client.get_bucket_versioning(b.name).status for b in client.list_buckets()}


def test_core_services_lifecycle(settings: Settings) -> None:
    s = settings
    started = time.monotonic()
    urls = lifecycle.up(s, services=CORE)
    took = time.monotonic() - started
    assert took < 60, f"core services took {took:.1f} s to come up"
    assert set(urls) == {"S3", "MLflow", "Dask", "Dask dashboard"}
    assert urls["S3"] == s.s3_endpoint_url
    assert urls["MLflow"] == s.mlflow_tracking_uri
    assert urls["Dask"] == s.dask_scheduler_address

    # Every endpoint answers, every bucket exists with versioning on.
    assert _get(s.s3_endpoint_url)[0] > 0
    assert _get(s.mlflow_tracking_uri + "/health")[0] == 200
    assert _get(urls["Dask dashboard"])[0] == 200
    versioning = _buckets_with_versioning(s)
    assert set(s.buckets) <= set(versioning)
    assert {versioning[b] for b in s.buckets} == {"Enabled"}

    # MLflow proxies artifacts into the mlflow bucket.
    from mlflow import MlflowClient

    client = MlflowClient(s.mlflow_tracking_uri)
    run = client.create_run(client.create_experiment("stack-test"))
    note = s.state_path / "note.txt"
    note.write_text("hello")
    client.log_artifact(run.info.run_id, str(note))
    from ml.storage import filesystem

    stored = filesystem(s).find(f"{s.bucket_mlflow}/artifacts")
    assert any(path.endswith(f"{run.info.run_id}/artifacts/note.txt") for path in stored), stored

    # Dask workers run with the service environment and can import the library.
    from distributed import Client

    def probe() -> tuple[str | None, str]:
        import os

        import ml

        return os.environ.get("S3_ENDPOINT_URL"), ml.__name__

    with Client(s.dask_scheduler_address, timeout=10) as dask:
        assert len(dask.scheduler_info()["workers"]) == s.dask_workers
        assert dask.submit(probe, pure=False).result(timeout=30) == (s.s3_endpoint_url, "ml")

    rows = {row.name: row for row in lifecycle.status(s)}
    for name in ("s3", "mlflow", "dask-scheduler", "dask-workers"):
        assert rows[name].state == "running" and rows[name].pid
    assert rows["airflow-scheduler"].state == "stopped"
    assert rows["mlflow"].url == s.mlflow_tracking_uri

    # Idempotent: a second `up` starts nothing.
    pids = _pids(s)
    assert lifecycle.up(s, services=CORE) == urls
    assert _pids(s) == pids

    # A crashed service is started again (stale pid file), and its buckets come back.
    os.killpg(pids["s3"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pids["s3"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {r.name: r.state for r in lifecycle.status(s)}["s3"] == "stopped"
    lifecycle.up(s, services=CORE)
    new_pids = _pids(s)
    assert new_pids["s3"] != pids["s3"]
    assert {k: v for k, v in new_pids.items() if k != "s3"} == {
        k: v for k, v in pids.items() if k != "s3"
    }
    assert set(s.buckets) <= set(_buckets_with_versioning(s))

    before = _family(new_pids)
    assert len(before) > len(new_pids)  # uvicorn and Dask worker processes too
    lifecycle.down(s)
    _assert_nothing_left(s, before)
    assert lifecycle.status(s)[0].state == "stopped"


def test_port_taken_by_a_stranger_is_reported(settings: Settings) -> None:
    s = settings
    host, port = layout.host_port(s.mlflow_tracking_uri)
    with socket.socket() as squatter:
        squatter.bind((host, port))
        squatter.listen()
        with pytest.raises(layout.StackError, match="already in use"):
            lifecycle.up(s, services=["mlflow"], timeout=30)
    assert not (s.state_path / "run" / "mlflow.pid").exists()


def test_failed_start_names_the_service_and_its_log(settings: Settings) -> None:
    s = settings.model_copy(update={"mlflow_database_url": "nosuchdb://nowhere"})
    with pytest.raises(layout.StackError) as failure:
        lifecycle.up(s, services=["mlflow"], timeout=60)
    message = str(failure.value)
    assert "mlflow" in message
    assert str(layout.log_file(s, "mlflow")) in message
    assert "nosuchdb" in message  # the log's last lines come with the error
    lifecycle.down(s)
    assert all(row.state == "stopped" for row in lifecycle.status(s))


def test_full_stack_with_airflow(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "mlpipe_stack_sleeper.py").write_text(SLEEPER_DAG)
    monkeypatch.setattr(services, "DAGS_FOLDER", dags)

    env = services.airflow_env(s)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(dags)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == s.airflow_api_url + "/execution/"
    assert env["MLFLOW_TRACKING_URI"] == s.mlflow_tracking_uri
    keys = s.state_path / "airflow" / "secrets.json"
    assert keys.stat().st_mode & 0o777 == 0o600
    assert services.airflow_env(s) == env  # keys and ports are kept, not regenerated

    started = time.monotonic()
    urls = lifecycle.up(s)
    took = time.monotonic() - started
    assert took < 120, f"the whole stack took {took:.1f} s to come up"
    assert set(urls) == {"S3", "MLflow", "Dask", "Dask dashboard", "Airflow"}

    status, body = _get(s.airflow_api_url + "/api/v2/monitor/health")
    assert status == 200
    health = json.loads(body)
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health
    assert _get(s.mlflow_tracking_uri + "/health")[0] == 200
    assert set(s.buckets) <= set(_buckets_with_versioning(s))
    assert all(row.state == "running" for row in lifecycle.status(s))

    pids = _pids(s)
    assert lifecycle.up(s) == urls
    assert _pids(s) == pids

    # Run a DAG whose tasks sleep, so `down` meets live task runners.
    status, body = _get(s.airflow_api_url + "/auth/token")
    assert status in (200, 201), body
    token = json.loads(body)["access_token"]
    dag_url = f"{s.airflow_api_url}/api/v2/dags/mlpipe_stack_sleeper"
    deadline = time.monotonic() + 90
    while _get(dag_url, token)[0] != 200:
        assert time.monotonic() < deadline, "the test DAG was not parsed in time"
        time.sleep(1)
    status, run = _post(dag_url + "/dagRuns", {"logical_date": None}, token)
    assert status == 200, run
    tis_url = f"{dag_url}/dagRuns/{run['dag_run_id']}/taskInstances"
    deadline = time.monotonic() + 90
    while True:
        tis = json.loads(_get(tis_url, token)[1])["task_instances"]
        states = {ti["task_id"]: ti["state"] for ti in tis}
        if states and all(state == "running" for state in states.values()):
            break
        assert time.monotonic() < deadline, f"tasks did not start: {states}"
        time.sleep(1)
    deadline = time.monotonic() + 30
    while not any(cmd.startswith("sleep 600") for cmd in _family(pids).values()):
        assert time.monotonic() < deadline, "the BashOperator's sleep did not show up"
        time.sleep(0.5)

    # Tasks start with the heavy libraries the scheduler imported before its workers forked.
    modules = set(json.loads((dags / "modules.json").read_text()))
    assert {"great_expectations", "torch", "mlflow", "s3fs"} <= modules
    assert "ml.validation" not in modules  # our own code: imported fresh by each task
    before = _family(pids)
    sleepers = [pid for pid, cmd in before.items() if cmd.startswith("sleep 600")]
    assert sleepers and os.getsid(sleepers[0]) not in pids.values()  # it left our sessions
    lifecycle.down(s)
    _assert_nothing_left(s, before)


def test_external_s3_endpoint_is_used_not_started(settings: Settings) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s = settings.model_copy(
            update={"s3_endpoint_url": f"http://{host}:{port}", "local_s3": False}
        )
        assert lifecycle.up(s, services=["s3"]) == {"S3": s.s3_endpoint_url}
        assert not (s.state_path / "run" / "s3.pid").exists()
        assert set(s.buckets) <= set(_buckets_with_versioning(s))
        row = lifecycle.status(s)[0]
        assert (row.name, row.state, row.pid) == ("s3 (external)", "running", None)
        lifecycle.down(s)
    finally:
        server.stop()
    assert lifecycle.status(s)[0].state == "stopped"


def test_postgres_urls_name_an_installed_driver() -> None:
    import importlib.util

    url = services.database_url("postgresql://postgres@127.0.0.1:5432/mlflow")
    if importlib.util.find_spec("psycopg") is None:
        assert url == "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow"
    assert services.database_url("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"
    assert services.database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_fresh_local_s3_starts_a_fresh_local_mlflow_store(settings: Settings) -> None:
    """moto keeps data in memory: after a restart the old registry would point at lost artifacts."""
    store = settings.state_path / "mlflow" / "mlflow.db"
    try:
        lifecycle.up(settings, services=["s3", "mlflow"])
        import mlflow

        # A client of this server only: mlflow.set_tracking_uri would outlive the test.
        client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        client.create_registered_model("kept-while-s3-lives")
        lifecycle.down(settings, services=["mlflow"])
        lifecycle.up(settings, services=["s3", "mlflow"])  # S3 kept running: the store is kept
        assert client.get_registered_model("kept-while-s3-lives")
        lifecycle.down(settings)
        assert store.exists()
        lifecycle.up(settings, services=["s3", "mlflow"])  # S3 starts empty: so does the store
        assert [m.name for m in client.search_registered_models()] == []
    finally:
        lifecycle.down(settings)
