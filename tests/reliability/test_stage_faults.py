"""Faults inside the pipeline's own stages (issue 13, item 8), on real parts: an S3 API server,
a Dask cluster of worker processes, an MLflow server that the test kills and starts again.

A dataset onboarded by contract alone (tests/data/contracts/daily_keys.yaml, a week of hourly
rows) goes through the real stage code. Each stage runs in a process of its own
(`tests.reliability.pause`) that stops at a named point, where the test SIGKILLs it or takes a
service away, then lets the stage's retry run: what it commits must be what a clean run commits,
with nothing partial ever visible, and a decision that could not be made is not taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml import commit, contracts, ingest, registry, storage, tracking
from ml.features import build
from ml.features.sets import SPLITS
from ml.model_versions import CHAMPION, alias_version
from ml.training.run import train
from ml.validation.batch import validate_batch
from tests.conftest import pipeline_environment
from tests.integration.test_contract_features import CONTRACT, DATASET, drop_day, series
from tests.reliability.pause import retry_action
from tests.reliability.services import RestartableMlflow

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DAYS = ingest.days_between("2024-03-01", "2024-03-08")
PARAMS = {"epochs": 2, "batch_size": 128, "hidden": 8, "layers": 1, "emb_dim": 2}
# A registry that does not answer fails a call in seconds (one retry), not after MLflow's
# default of seven with backoff: the tasks' own retries (with backoff) take it from there.
MLFLOW_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


@pytest.fixture(scope="module")
def world(s3_server, tmp_path_factory):
    """The contract in a folder of its own, a week ingested and validated, a Dask cluster of two
    worker processes and a restartable MLflow server."""
    from distributed import LocalCluster

    folder = tmp_path_factory.mktemp("stage-faults")
    # The contract, and the output contracts scoring checks its predictions against.
    shutil.copytree(REPO / "data_contracts" / "outputs", folder / "contracts" / "outputs")
    (folder / "contracts" / CONTRACT.name).write_bytes(CONTRACT.read_bytes())
    frame = series()
    for day in DAYS:
        drop_day(folder / "drop", frame, day)
    mlflow = RestartableMlflow(folder)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    env = {
        "MLPIPE_DROP_DIR": str(folder / "drop"),
        "MLPIPE_TEST_CONTRACTS_DIR": str(folder / "contracts"),
        "DASK_SCHEDULER_ADDRESS": cluster.scheduler_address,
        "MLFLOW_TRACKING_URI": mlflow.uri,
        **MLFLOW_CLIENT,
    }
    try:
        mlflow.start()
        with pytest.MonkeyPatch.context() as mp, pipeline_environment(env):
            mp.setattr(contracts, "CONTRACTS_DIR", folder / "contracts")
            for day in DAYS:
                validate_batch(ingest.ingest_partition(DATASET, day).ref, DATASET)
            yield {"folder": folder, "cluster": cluster, "mlflow": mlflow}
    finally:
        mlflow.close()
        cluster.close()


# --- a stage in a process of its own, stopped at a point ----------------------------------------


def _stage(folder: Path, call: str, args: dict, at: str = "") -> tuple[subprocess.Popen, Path]:
    token = time.monotonic_ns()
    ready, go = folder / f"ready-{token}", folder / f"go-{token}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PAUSE_READY": str(ready), "PAUSE_GO": str(go)}
    if at:
        env["PAUSE_AT"] = at
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.pause", call, json.dumps(args)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, ready


def _paused(proc: subprocess.Popen, ready: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the stage ended before its pause point: {proc.communicate()}")
        assert time.monotonic() < deadline, "the stage never reached its pause point"
        time.sleep(0.05)


def _killed_at(folder: Path, call: str, args: dict, at: str) -> None:
    """Run the stage up to `at`, then SIGKILL it there."""
    proc, ready = _stage(folder, call, args, at)
    try:
        _paused(proc, ready)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()


def _finished(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, dict]:
    out, err = proc.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    assert lines, err[-3000:]
    return proc.returncode, json.loads(lines[-1])


def _run(folder: Path, call: str, args: dict) -> dict:
    code, out = _finished(_stage(folder, call, args)[0])
    assert code == 0, out
    return out


# --- feature sets --------------------------------------------------------------------------------


def _feature_files(ref: str) -> dict[str, str]:
    """A committed feature set's files (split/part and transform) -> sha256 of their bytes."""
    fs, base = storage.filesystem(), _feature_manifest(ref)["data"][5:]
    files = [p for p in fs.find(base) if p.endswith((".parquet", "transform.json"))]
    return {p[len(base) :]: commit.hashlib.sha256(fs.cat_file(p)).hexdigest() for p in files}


def _forget_features() -> None:
    fs = storage.filesystem()
    with contextlib.suppress(FileNotFoundError):
        fs.rm(f"features/{DATASET}", recursive=True)
    fs.invalidate_cache()


def _visible_feature_sets() -> list[str]:
    fs = storage.filesystem()
    fs.invalidate_cache()
    return fs.glob(f"features/{DATASET}/*/{storage.MANIFEST}")


@pytest.fixture(scope="module")
def clean_features(world) -> dict:
    """A clean build's files and rows (then forgotten, so that each case starts from nothing)."""
    _forget_features()
    built = build.build_features(DATASET)
    clean = {"ref": built.ref, "files": _feature_files(built.ref), "rows": _split_rows(built.ref)}
    _forget_features()
    return clean


def _feature_manifest(ref: str) -> dict:
    fs = storage.filesystem()
    fs.invalidate_cache()  # written by another process since this one last listed
    return json.loads(fs.cat_file(f"{ref[5:]}/{storage.MANIFEST}"))


def _split_rows(ref: str) -> int:
    return sum(_feature_manifest(ref)["rows"][split] for split in SPLITS)


def _validated_rows() -> int:
    return sum(m.rows for m in storage.latest_batches("validated", DATASET).values())


def test_preprocess_sigkilled_before_its_commit_then_retried(world, clean_features, record_fault):
    _forget_features()
    _killed_at(world["folder"], "build", {"dataset": DATASET}, at="ml.commit:put_if_absent")
    visible = _visible_feature_sets()
    orphans = storage.filesystem().glob(f"features/{DATASET}/*/*/train/part-*.parquet")
    retried = _run(world["folder"], "build", {"dataset": DATASET})["ref"]
    same = _feature_files(retried) == clean_features["files"]
    record_fault(
        case="sigkill preprocess after its parts, before its manifest; then the retry",
        kind="sigkill",
        survived=not visible and same,
        rows_in=clean_features["rows"],
        rows_validated=_split_rows(retried),
        duplicates=len(_visible_feature_sets()) - 1,
    )
    assert orphans and not visible  # the parts were written, and no feature set was visible
    assert retried == clean_features["ref"] and same  # byte for byte a clean build


def test_a_dask_worker_killed_while_it_holds_the_train_split(
    world, clean_features, monkeypatch, record_fault
):
    """SIGKILL of the worker holding most of the persisted train split, between the persist and
    the fit: the scheduler recomputes what was lost; the feature set is a clean build's."""
    from distributed import get_client, wait

    _forget_features()
    killed = []
    real_fit = build.fit_on_dask

    def kill_a_worker_then_fit(transform, train):
        client = get_client()
        wait(train)  # persisted: its partitions are in the workers' memory
        holding = client.has_what()
        worker = max(holding, key=lambda w: len(holding[w]))
        pid = client.run(os.getpid, workers=[worker])[worker]
        os.kill(pid, signal.SIGKILL)
        killed.append((worker, len(holding[worker])))
        return real_fit(transform, train)

    monkeypatch.setattr(build, "fit_on_dask", kill_a_worker_then_fit)
    built = build.build_features(DATASET)
    same = _feature_files(built.ref) == clean_features["files"]
    record_fault(
        case="a Dask worker SIGKILLed while it holds the persisted train split",
        kind="dask-worker",
        survived=bool(same and killed),
        rows_in=clean_features["rows"],
        rows_validated=_split_rows(built.ref),
        duplicates=len(_visible_feature_sets()) - 1,
        note=f"killed {killed[0][0] if killed else 'none'} holding {killed[0][1] if killed else 0} keys",
    )
    assert killed and killed[0][1] > 0, "no worker held any of the train split"
    assert same and not built.reused


# --- training and promotion with the registry gone ----------------------------------------------


@pytest.fixture(scope="module")
def features(world):
    return build.build_features(DATASET)  # a committed feature set (reused when there is one)


@pytest.fixture(scope="module")
def champion(features) -> str:
    """A first version, promoted (no champion before it)."""
    result = train(features.ref, PARAMS)
    assert registry.promote(result.model_name, result.version, result.eval_snapshot).promoted
    return result.version


def _runs_of(task_key: str) -> list:
    from ml.training.task_run import TASK_KEY_TAG

    client = tracking.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.{TASK_KEY_TAG} = '{task_key}'")


def test_mlflow_down_during_training_then_the_retry(world, features, record_fault):
    """The server is killed when the network has trained and the run is to be finished (test
    metrics, figures, the model version): the try fails in bounded time with an error the
    tasks retry; the retry, with the server back, finishes the same run and registers once."""
    from ml.training.checkpoint import task_key

    key = {"dag_id": "train_faults", "run_id": "manual__mlflow_down", "task_id": "train_model"}
    key["map_index"] = -1
    args = {"ref": features.ref, "params": PARAMS, "task_instance": {**key, "try_number": 1}}
    mlflow = world["mlflow"]
    proc, ready = _stage(world["folder"], "train", args, at="ml.training.run:_finish")
    _paused(proc, ready)
    mlflow.stop()
    started = time.monotonic()
    (ready.parent / ready.name.replace("ready-", "go-")).touch()
    try:
        code, failed = _finished(proc, timeout=600)
    finally:
        mlflow.start()
    took = time.monotonic() - started
    retried = _run(world["folder"], "train", {**args, "task_instance": {**key, "try_number": 2}})
    runs = _runs_of(task_key(**key))
    name = contracts.load_contract(DATASET).model_name
    versions = [
        v
        for v in tracking.client().search_model_versions(f"name='{name}'")
        if v.run_id == retried["run_id"]
    ]
    ok = code == 1 and failed["retry"] != "FAIL" and len(runs) == 1 and len(versions) == 1
    record_fault(
        case="MLflow server killed during training (before the run is finished); then the retry",
        kind="mlflow-down",
        survived=ok,
        duplicates=max(len(versions), 1) - 1 + max(len(runs), 1) - 1,
        note=f"{failed.get('error')} after {took:.0f} s -> retry policy {failed.get('retry')}",
    )
    assert code == 1 and failed["retry"] != "FAIL", failed
    assert took < 300, f"the try held on for {took:.0f} s with the registry gone"
    assert [r.info.run_id for r in runs] == [retried["run_id"]]  # one run, continued
    assert len(versions) == 1  # and at most one version
    assert f"trained on feature set {features.manifest['feature_version']}" in (
        versions[0].description
    )
    # The run names its Airflow task, the attempt that wrote last, and links back to it.
    tags = runs[0].data.tags
    assert (tags["airflow.dag_id"], tags["airflow.try_number"]) == ("train_faults", "2")
    assert tags["airflow.url"].endswith(
        "/dags/train_faults/runs/manual__mlflow_down/tasks/train_model"
    )


def test_mlflow_down_during_promotion_never_promotes(
    world, features, champion, monkeypatch, record_fault
):
    """The server is killed when the challenger has been scored and the champion is read under
    the lock: no decision is taken on an answer that was not given, nothing is recorded, the
    lock is let go; with the server back, the retry decides once."""
    from ml import model_versions

    challenger = train(features.ref, {**PARAMS, "seed": 11})
    name, mlflow = challenger.model_name, world["mlflow"]
    before = registry.history(name)
    real_alias = registry.alias_version

    def registry_gone(model_name, alias):
        if alias == CHAMPION:
            mlflow.stop()
        return real_alias(model_name, alias)

    monkeypatch.setattr(registry, "alias_version", registry_gone)
    started = time.monotonic()
    try:
        with pytest.raises(model_versions.RegistryUnavailable) as failed:
            registry.promote(name, challenger.version, challenger.eval_snapshot)
    finally:
        monkeypatch.setattr(registry, "alias_version", real_alias)
        mlflow.start()
    took = time.monotonic() - started
    action = retry_action(failed.value)
    unchanged = alias_version(name, CHAMPION) == champion and registry.history(name) == before
    decided = registry.promote(name, challenger.version, challenger.eval_snapshot)
    records = [r for r in registry.history(name) if str(r.get("version")) == challenger.version]
    record_fault(
        case="MLflow server killed during promotion (reading the champion under the lock)",
        kind="mlflow-down",
        survived=unchanged and action != "FAIL" and len(records) == 1,
        duplicates=max(len(records), 1) - 1,
        note=f"RegistryUnavailable after {took:.0f} s -> retry policy {action}; "
        f"the retry: promoted={decided.promoted}",
    )
    assert unchanged, "a promotion moved or recorded something on a registry that did not answer"
    assert action != "FAIL" and took < 120
    assert len(records) == 1 and records[0]["promoted"] == decided.promoted


# --- scoring -----------------------------------------------------------------------------------


def test_scoring_sigkilled_before_its_commit_then_retried(world, champion, record_fault):
    """Killed with its predictions written and not committed: nothing visible, the day still
    pending; the retry commits one batch of every row. A re-run killed the same way leaves the
    committed predictions as they were (replacement switches by manifest only)."""
    day = DAYS[-1]
    partition = f"date={day}"
    args = {"dataset": DATASET, "day": day, "version": champion}
    _killed_at(world["folder"], "score", args, at="ml.score:_commit")
    visible = [b for b in storage.list_batches("predictions", DATASET) if b.partition == partition]
    retried = _run(world["folder"], "score", args)
    _killed_at(world["folder"], "score", args, at="ml.score:_commit")
    after = [b for b in storage.list_batches("predictions", DATASET) if b.partition == partition]
    rows = storage.read_batch(after[0]) if after else None
    expected = storage.latest_batches("validated", DATASET)[partition].rows
    keys = ["date", "hour", "model"]
    ok = (
        not visible
        and [b.ref for b in after] == [retried["ref"]]
        and len(rows) == expected
        and not rows.duplicated(keys).any()
    )
    record_fault(
        case="sigkill scoring after its parts, before its manifest; then the retry and a re-run",
        kind="sigkill",
        survived=ok,
        rows_in=expected,
        rows_validated=len(rows) if rows is not None else 0,
        duplicates=int(rows.duplicated(keys).sum()) if rows is not None else 0,
    )
    assert not visible, "predictions were visible before their manifest"
    assert [b.ref for b in after] == [retried["ref"]]  # the killed re-run replaced nothing
    assert len(rows) == expected == retried["rows"] and not rows.duplicated(keys).any()
