"""The commit protocol on a real S3 API server: attempts under their own prefix, one manifest per
batch, replacement by manifest switch, readers that refuse a batch that does not match its
manifest, data-time order, and validation that is idempotent and never undoes a release."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from ml import commit, quarantine, storage
from ml.contracts import load_contract
from ml.validation.batch import validate_batch
from ml.validation.outcome import ContractViolation
from tests.conftest import pipeline_environment

pytestmark = pytest.mark.integration

CONTRACT = """\
dataset: {dataset}
owner: test@example.org
columns:
  id:    {{type: int, nullable: false}}
  age:   {{type: int, min: 0, max: {max_age}}}
table:
  row_count: {{min: 1, max: 100}}
failure_policy: quarantine_batch
"""
PARTITION = "date=2024-05-01"


@pytest.fixture
def salted(s3_server):
    with pipeline_environment({"MLPIPE_PII_SALT": "pepper"}):
        yield


def _contract(tmp_path, dataset: str, max_age: int = 130):
    path = tmp_path / f"{dataset}-{max_age}.yaml"
    path.write_text(CONTRACT.format(dataset=dataset, max_age=max_age))
    return load_contract(path)


def _frame(n: int = 10, age: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "age": [age] * n})


def _objects(ref: str) -> list[str]:
    fs = storage.filesystem()
    prefix = ref.removeprefix("s3://")
    fs.invalidate_cache(prefix)
    return sorted(p.removeprefix(prefix + "/") for p in fs.find(prefix))


def test_two_attempts_of_one_task_commit_one_batch(s3_server):
    key = commit.idempotency_key("twins", PARTITION, "same content", "")
    results, errors = [], []

    def attempt():
        try:
            results.append(storage.write_batch(_frame(), "raw", "twins", PARTITION, batch_id=key))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    batches = storage.list_batches("raw", "twins", PARTITION)
    assert len(batches) == 1
    # Every attempt returns the one committed manifest; the losers removed their parts.
    assert {m.attempt for m in results} == {batches[0].attempt}
    assert _objects(batches[0].ref) == sorted([*batches[0].objects(), commit.MANIFEST])
    assert len(storage.read_batch(batches[0])) == 10


def test_a_listing_made_earlier_never_hides_another_writers_commit(s3_server):
    """A long-lived reader (a scheduler, the console) listed a batch folder while another
    process was still writing its parts; the commit that follows is seen at once."""
    import s3fs

    fs = storage.filesystem()
    options = storage.get_settings().s3_storage_options()
    other = s3fs.S3FileSystem(skip_instance_cache=True, **options)  # another process's client
    other.pipe_file(f"raw/late/{PARTITION}/b-1/a-1/part-00000.parquet", _frame().to_parquet())
    assert fs.ls(f"raw/late/{PARTITION}/b-1") and not storage.list_batches("raw", "late")
    with pytest.MonkeyPatch.context() as mp:  # the writer, with a filesystem of its own
        mp.setattr(storage, "filesystem", lambda settings=None: other)
        committed = storage.commit_parts("raw", "late", PARTITION, "b-1", attempt="a-1")
    assert [b.ref for b in storage.list_batches("raw", "late")] == [committed.ref]


def test_a_replacement_switches_by_manifest_and_removes_the_old_attempt(s3_server):
    raw = storage.write_batch(_frame(), "raw", "swap", PARTITION)
    first = storage.copy_batch(raw, "validated")
    second = storage.copy_batch(raw, "validated", extra={"again": True})
    assert second.attempt != first.attempt
    assert storage.read_manifest(first.ref).attempt == second.attempt
    assert _objects(second.ref) == sorted([*second.objects(), commit.MANIFEST])


def test_a_failed_replacement_leaves_the_committed_batch_readable(s3_server):
    raw = storage.write_batch(_frame(), "raw", "keep", PARTITION)
    committed = storage.copy_batch(raw, "validated")

    def frames():
        yield _frame(3)
        raise OSError("S3 went away mid-write")

    with pytest.raises(OSError, match="mid-write"):
        storage.write_parts(frames(), "validated", raw)
    assert storage.read_manifest(committed.ref) == committed
    assert len(storage.read_batch(committed)) == 10


def test_readers_refuse_a_batch_that_differs_from_its_manifest(s3_server):
    m = storage.write_batch(_frame(), "raw", "tamper", PARTITION)
    fs = storage.filesystem()
    other = storage.write_batch(_frame(4), "raw", "tamper", "date=2024-05-02")
    fs.copy(other.part_urls[0].removeprefix("s3://"), m.part_urls[0].removeprefix("s3://"))
    with pytest.raises(storage.BatchIntegrityError, match="sha256 differs"):
        storage.read_batch(m)
    fs.rm(m.part_urls[0].removeprefix("s3://"))
    with pytest.raises(storage.BatchIntegrityError, match="missing"):
        storage.read_batch(m)
    # Rows are checked where no checksum was recorded (parts another writer put there).
    n = storage.write_batch(_frame(), "raw", "tamper", "date=2024-05-03")
    n.parts = [{k: v for k, v in p.items() if k != "sha256"} | {"rows": 11} for p in n.parts]
    with pytest.raises(storage.BatchIntegrityError, match="11"):
        storage.read_batch(n)


def test_latest_follows_data_time_not_the_time_a_stage_ran(s3_server):
    old = storage.write_batch(_frame(age=1), "raw", "order", PARTITION)
    new = storage.write_batch(
        _frame(age=2), "raw", "order", PARTITION, extra={"supersedes": old.ref}
    )
    storage.copy_batch(new, "validated")
    storage.copy_batch(old, "validated")  # the superseded day validated last
    latest = storage.latest_batches("validated", "order")[PARTITION]
    assert latest.batch_id == new.batch_id


def test_validation_is_a_no_op_under_the_same_contract(salted, tmp_path):
    contract = _contract(tmp_path, "again")
    raw = storage.write_batch(_frame(), "raw", "again", PARTITION)
    first = validate_batch(raw.ref, contract)
    second = validate_batch(raw.ref, contract)
    assert second.manifest == first.manifest and second.status == first.status == "passed"
    assert second.report.contract_hash == contract.hash
    # A new contract validates again, and replaces the validated batch.
    stricter = _contract(tmp_path, "again", max_age=20)
    with pytest.raises(ContractViolation):
        validate_batch(raw.ref, stricter)


def test_a_release_is_never_undone_by_validating_again(salted, tmp_path):
    contract = _contract(tmp_path, "freed", max_age=20)
    raw = storage.write_batch(_frame(), "raw", "freed", PARTITION)
    with pytest.raises(ContractViolation):
        validate_batch(raw.ref, contract)
    with pytest.raises(ContractViolation, match="validated before"):
        validate_batch(raw.ref, contract)  # the same outcome, nothing written again
    quarantine.release(raw.ref, by="alice", contract=contract)
    released = storage.read_manifest(storage.ref_in_zone(raw.ref, "validated"))
    again = validate_batch(raw.ref, contract)  # e.g. a re-ingest re-emitted the batch
    assert again.status == "passed" and again.manifest == released
    assert storage.read_manifest(released.ref).extra["released_by"] == "alice"
