"""The policies of `infra/minio/policies/`, proven: an S3 server that enforces IAM (moto's, with
one user per policy file), every stage's real code run with its own keys, and the forbidden
actions denied.

The environment's own keys belong to a user with no policy at all, so code that escaped its
stage's identity fails here instead of passing with an all-powerful key. Dask workers act with
the `dask` identity, the MLflow server with the `mlflow` one.

moto evaluates actions and resource ARNs (wildcards included) of identity policies; it does not
evaluate `Condition` blocks for S3 (a statement with one always denies), so the policies use
none. It fails on presigned URLs (MLflow's direct downloads: proxied here, `PROXIED_DOWNLOADS`).
It honours `If-None-Match: *` on PutObject and `If-Match` on DeleteObject, which the raw
zone, the audit log and the alias lock rely on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
from collections.abc import Iterator
from datetime import date

import pytest

from ml import commit, contracts, ingest, lineage, quarantine, registry, score, storage
from ml.alias_lock import alias_lock, lock_key
from ml.dev.stack import iam
from ml.dev.stack.secure_s3 import PROXIED_DOWNLOADS
from ml.features import build
from ml.identity import S3Identity, use_identity
from ml.model_versions import CHAMPION, PREVIOUS, alias_version
from ml.sources.errors import UnreadableInput
from ml.training.run import train
from ml.validation.batch import validate_batch
from ml.validation.outcome import ContractViolation
from tests.conftest import free_port, pipeline_environment
from tests.integration.conftest import _stop
from tests.integration.test_quarantine import PARTITION, _contract, _frame

pytestmark = pytest.mark.integration

DAYS = ingest.days_between("2013-01-01", "2013-01-05")
STAGES = ("ingest", "validate", "preprocess", "train", "promote", "score", "dask", "airflow")


@dataclasses.dataclass
class Stack:
    admin: S3Identity
    ids: dict[str, S3Identity]

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run the block as `name`, its Dask work as the `dask` identity."""
        with use_identity(self.ids[name], dask=self.ids["dask"]):
            yield

    def client(self, name: str):
        """A boto3 S3 client with the keys of `name` (`admin` for the admin)."""
        from ml.alias_lock import s3_client

        who = self.admin if name == "admin" else self.ids[name]
        with use_identity(who):
            return s3_client()


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory) -> Iterator[Stack]:
    """moto's server enforcing IAM, the buckets, one user per policy file and one with none."""
    from ml.dev.stack.services import moto_server_argv
    from tests.integration.conftest import wait_http

    port = free_port()
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "wb")  # noqa: SIM115
    env = {**__import__("os").environ, **iam.moto_iam_env()}
    proc = subprocess.Popen(
        moto_server_argv("127.0.0.1", port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/moto-api/", proc, "moto S3 server")
        with pipeline_environment({"S3_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}):
            admin = iam.bootstrap_admin()
            ids = iam.create_s3_identities(admin)
            nobody = iam.create_s3_identities(admin, _empty_policy_dir(tmp_path_factory))
            with use_identity(admin):
                storage.ensure_buckets()
            keys = nobody["nobody"]
            with pipeline_environment(
                {
                    "MLFLOW_S3_ENDPOINT_URL": endpoint,
                    **PROXIED_DOWNLOADS,
                    "AWS_ACCESS_KEY_ID": keys.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
                }
            ):
                yield Stack(admin, ids)
    finally:
        _stop(proc)
        log.close()


def _empty_policy_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nobody")
    (folder / "nobody.json").write_text(
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": '
        '"s3:GetBucketLocation", "Resource": "arn:aws:s3:::nothing"}]}'
    )
    return folder


@pytest.fixture(scope="module")
def cluster(enforcing) -> Iterator[str]:
    from distributed import LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
        ) as c,
        pipeline_environment({"DASK_SCHEDULER_ADDRESS": c.scheduler_address}),
    ):
        yield c.scheduler_address


@pytest.fixture(scope="module")
def mlflow_as_mlflow(enforcing, tmp_path_factory) -> Iterator[str]:
    """The MLflow server started with the `mlflow` identity's keys (artifacts proxied)."""
    from bench._common import mlflow_server

    keys = enforcing.ids["mlflow"]
    with contextlib.ExitStack() as stack:
        env = pipeline_environment(
            {
                "AWS_ACCESS_KEY_ID": keys.access_key_id,
                "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
            }
        )
        env.__enter__()
        try:
            uri = stack.enter_context(mlflow_server(tmp_path_factory.mktemp("mlflow")))
        finally:
            env.__exit__(None, None, None)
        yield uri


def _denied(call) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()
    assert info.value.response["Error"]["Code"] in {"AccessDenied", "403"}, info.value.response


# --- every stage's real code, each with its own keys ---------------------------------------------


@pytest.fixture(scope="module")
def chain(enforcing, cluster, mlflow_as_mlflow):
    """ingest -> validate -> preprocess -> train (checkpoints) -> promote (lock) -> score (drift)."""
    st = enforcing
    validated = {}
    with st.stage("ingest"):
        raw = {
            (d, day): ingest.ingest_partition(d, day)
            for d in ("flights", "weather")
            for day in DAYS
        }
        raw |= {(d, None): ingest.ingest_partition(d, DAYS[-1]) for d in ("planes", "airports")}
    with st.stage("validate"):
        for key, batch in raw.items():
            validated[key] = validate_batch(batch.ref, key[0]).manifest.ref
    with st.stage("preprocess"):
        features = build.build_features("flights")
    with st.stage("train"):
        first = train(features.ref, {"epochs": 2})
        second = train(features.ref, {"epochs": 1, "learning_rate": 1e-7, "seed": 7})
    with st.stage("promote"):
        promoted = registry.promote(first.model_name, first.version, first.eval_snapshot)
        forced = registry.promote(
            second.model_name, second.version, second.eval_snapshot, force=True, requested_by="t"
        )
    with st.stage("score"):
        scored = score.score("flights")
    return {
        "raw": raw,
        "validated": validated,
        "features": features,
        "first": first,
        "second": second,
        "promoted": promoted,
        "forced": forced,
        "scored": scored,
    }


def test_every_stage_runs_with_its_own_policy(enforcing, chain):
    first, second = chain["first"], chain["second"]
    assert chain["promoted"].promoted and chain["forced"].promoted
    assert alias_version(first.model_name, CHAMPION) == second.version
    assert alias_version(first.model_name, PREVIOUS) == first.version
    assert chain["scored"].version == second.version

    admin = enforcing.client("admin")
    checkpoints = admin.list_objects_v2(Bucket="mlflow", Prefix="checkpoints/flights/")
    assert any(o["Key"].endswith("LATEST.json") for o in checkpoints.get("Contents", []))
    with use_identity(enforcing.admin):
        drift = storage.read_json(chain["scored"].drift_report)
        assert drift["predictions"] == chain["scored"].ref
        # The lock was given back after each move, with no delete right in the audit log.
        lock = lock_key(first.model_name)
        assert "Contents" not in admin.list_objects_v2(Bucket="reports", Prefix=lock)


def test_rollback_and_history_with_the_promote_identity(enforcing, chain):
    first, second = chain["first"], chain["second"]
    with enforcing.stage("promote"):
        record = registry.rollback(first.model_name, by="tester", reason="policy suite")
        assert record["version"] == first.version
        assert alias_version(first.model_name, CHAMPION) == first.version
        actions = [r["action"] for r in registry.history(first.model_name)]
    assert actions[-3:] == ["promote", "promote", "rollback"]
    assert second.version != first.version


def test_lineage_reads_with_the_read_only_identity(enforcing, chain):
    with enforcing.stage("airflow"):
        tree = lineage.upstream(chain["scored"].ref)
        down = lineage.downstream(chain["raw"][("flights", DAYS[-1])].ref)
    assert tree and down


def test_unreadable_input_is_quarantined_by_the_ingest_identity(enforcing, monkeypatch, tmp_path):
    real = contracts.load_contract("orders")
    source = {"kind": "drop_folder", "path": "orders", "pattern": "{date}.csv"}
    patched = dataclasses.replace(real, raw={**real.raw, "source": source})
    monkeypatch.setattr(contracts, "load_contract", lambda name: patched)
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "2024-03-10.csv").write_bytes(b"")
    with pipeline_environment({"MLPIPE_DROP_DIR": str(tmp_path)}), enforcing.stage("ingest"):
        with pytest.raises(UnreadableInput) as info:
            ingest.ingest_partition("orders", date(2024, 3, 10))
        held = storage.read_manifest(info.value.quarantine_ref)
    assert held.extra["unreadable"] is True


def test_quarantine_release_and_drop_with_the_validate_identity(enforcing, tmp_path):
    contract = _contract(tmp_path, "quarantine_batch")
    with pipeline_environment({"MLPIPE_PII_SALT": "pepper"}):
        with enforcing.stage("ingest"):
            kept = storage.write_batch(_frame([1]), "raw", "people", PARTITION)
            junk = storage.write_batch(_frame([2]), "raw", "people", PARTITION)
        with enforcing.stage("validate"):
            for raw in (kept, junk):
                with pytest.raises(ContractViolation):
                    validate_batch(raw.ref, contract)
            released = quarantine.release(
                storage.ref_in_zone(kept.ref, "quarantine"), by="alice", contract=contract
            )
            quarantine.drop(storage.ref_in_zone(junk.ref, "quarantine"), by="bob")
    assert released["validated"].startswith("s3://validated/people/")


# --- what no identity may do ---------------------------------------------------------------------


def test_ingest_cannot_write_predictions_and_score_cannot_write_models_or_raw(enforcing):
    ingest_s3, score_s3 = enforcing.client("ingest"), enforcing.client("score")
    _denied(lambda: ingest_s3.put_object(Bucket="predictions", Key="x/y.parquet", Body=b"x"))
    for bucket, key in (("mlflow", "artifacts/m/model.pkl"), ("raw", "flights/x/_manifest.json")):
        _denied(lambda b=bucket, k=key: score_s3.put_object(Bucket=b, Key=k, Body=b"x"))
    _denied(lambda: score_s3.put_object(Bucket="features", Key="flights/v/model.json", Body=b"x"))


@pytest.fixture(scope="module")
def kept(enforcing):
    """A raw batch (by `ingest`) and an audit record (by `promote`), written by the real code."""
    with enforcing.stage("ingest"):
        raw = storage.write_batch(_frame([]), "raw", "people", PARTITION)
    with enforcing.stage("promote"):
        audit = registry._audit("policy-model", {"action": "promote", "version": "1"})
    return raw, audit


@pytest.mark.parametrize("name", (*STAGES, "mlflow"))
def test_nothing_is_deleted_or_rewritten_in_raw_or_the_audit_log(enforcing, kept, name):
    s3, admin = enforcing.client(name), enforcing.client("admin")
    raw, audit = kept
    raw_key = f"{raw.prefix.split('/', 1)[1]}/_manifest.json"
    for bucket, key in (("raw", raw_key), ("reports", audit.removeprefix("s3://reports/"))):
        version = admin.head_object(Bucket=bucket, Key=key)["VersionId"]
        _denied(lambda b=bucket, k=key: s3.delete_object(Bucket=b, Key=k))
        _denied(lambda b=bucket, k=key, v=version: s3.delete_object(Bucket=b, Key=k, VersionId=v))
        _denied(
            lambda b=bucket: s3.put_bucket_versioning(
                Bucket=b, VersioningConfiguration={"Status": "Suspended"}
            )
        )
        writer = {"raw": "ingest", "reports": "promote"}[bucket]
        if name != writer:
            _denied(lambda b=bucket, k=key: s3.put_object(Bucket=b, Key=k, Body=b"x"))
        else:  # the one writer's code creates only: a second write of a key is refused
            from botocore.exceptions import ClientError

            with pytest.raises(ClientError, match="PreconditionFailed"):
                s3.put_object(Bucket=bucket, Key=key, Body=b"x", IfNoneMatch="*")
        assert admin.head_object(Bucket=bucket, Key=key)["VersionId"] == version


def test_a_raw_batch_is_never_recommitted(enforcing, kept):
    with enforcing.stage("ingest"):
        fs = storage.filesystem()  # the stage's keys (outside it: the keys of nobody)
        with pytest.raises(FileExistsError):
            fs.pipe_file(f"{kept[0].prefix}/{storage.MANIFEST}", b"{}", mode="create")
        # A second attempt's commit is refused by the same If-None-Match and gets the first back.
        again = dataclasses.replace(kept[0], attempt="a-second")
        assert commit.commit(fs, again).attempt == kept[0].attempt


# --- the alias lock under append-only zones ------------------------------------------------------


def test_a_stale_lock_is_broken_and_its_old_holder_moves_nothing(enforcing, monkeypatch):
    from ml import alias_lock as locks

    with enforcing.stage("promote"):
        with alias_lock("policy-model", timeout=1) as old:
            with (
                pytest.raises(locks.AliasLockError, match="locked by"),
                alias_lock("policy-model", timeout=0.5),
            ):
                pass
            monkeypatch.setattr(locks, "STALE_AFTER_S", -1.0)  # the old holder looks dead
            with alias_lock("policy-model", timeout=5) as new:
                assert new.etag != old.etag
                with pytest.raises(locks.AliasLockError, match="broken as stale"):
                    old.check()  # fencing: the old holder may not move aliases
                new.check()
        # the old holder's release left the new holder's lock alone; the new one released its own
        s3 = enforcing.client("admin")
        assert "Contents" not in s3.list_objects_v2(
            Bucket="reports", Prefix=lock_key("policy-model")
        )
