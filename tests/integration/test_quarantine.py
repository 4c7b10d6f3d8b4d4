"""What a person does with quarantined batches: list, show, release, drop, on a real S3 server."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ml import cli, quarantine, storage
from ml.contracts import load_contract
from ml.validation.batch import validate_batch
from ml.validation.outcome import ContractViolation
from tests.conftest import pipeline_environment

pytestmark = pytest.mark.integration

CONTRACT = """\
dataset: people
owner: test@example.org
columns:
  id:    {{type: int, nullable: false}}
  age:   {{type: int, min: 0, max: 130}}
  email: {{type: string}}
table:
  row_count: {{min: 1, max: 100}}
pii: {{email: hash}}
failure_policy: {policy}
"""
PARTITION = "date=2024-05-01"


@pytest.fixture
def salted(s3_server):
    with pipeline_environment({"MLPIPE_PII_SALT": "pepper"}):
        yield


def _contract(tmp_path, policy):
    path = tmp_path / "people.yaml"
    path.write_text(CONTRACT.format(policy=policy))
    return load_contract(path)


def _frame(bad: list[int]) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "id": range(10),
            "age": [30 + i for i in range(10)],
            "email": [f"p{i}@example.org" for i in range(10)],
        }
    )
    df.loc[bad, "age"] = 999
    return df


def _run(*argv: str, capsys) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_list_show_release_a_whole_batch(salted, tmp_path, capsys):
    contract = _contract(tmp_path, "quarantine_batch")
    raw = storage.write_batch(_frame([1, 2]), "raw", "people", PARTITION)
    with pytest.raises(ContractViolation):
        validate_batch(raw.ref, contract)
    held_ref = storage.ref_in_zone(raw.ref, "quarantine")

    items = quarantine.held("people")
    assert [i.ref for i in items] == [held_ref]
    assert items[0].failed_rules == ["people.age.max"] and items[0].rows == 10
    assert items[0].kind == "batch" and items[0].status == "held"
    code, out = _run("quarantine", "list", "people", capsys=capsys)
    assert code == 0 and held_ref in out and "people.age.max" in out and "10 rows" in out

    code, out = _run("quarantine", "show", raw.ref, capsys=capsys)  # any zone's ref will do
    assert code == 0
    assert "FAILED people.age.max: 2 unexpected" in out and "[999, 999]" in out

    code, out = _run(
        "quarantine", "release", held_ref, "--by", "alice", "--note", "ages in months",
        "--contract", contract.path, capsys=capsys,
    )  # fmt: skip
    assert code == 0 and "released" in out
    validated = storage.read_manifest(storage.ref_in_zone(raw.ref, "validated"))
    assert validated.extra["released_by"] == "alice" and validated.extra["released_at"]
    assert validated.rows == 10
    rows = storage.read_batch(validated)
    assert rows["email"].str.fullmatch("[0-9a-f]{64}").all()  # PII hashed on release
    audit = [p for p in storage.filesystem().find("reports/quarantine/people") if "release" in p]
    assert len(audit) == 1
    record = json.loads(storage.filesystem().cat_file(audit[0]))
    assert record["by"] == "alice" and record["validated"] == validated.ref

    assert quarantine.held("people") == []  # no longer held
    assert quarantine.held("people", include_done=True)[0].status == "released"
    code, _ = _run("quarantine", "release", held_ref, capsys=capsys)
    assert code == 1  # already released
    # the raw rows are still in quarantine, as they came
    pd.testing.assert_frame_equal(
        storage.read_batch(storage.read_manifest(held_ref)), _frame([1, 2])
    )


def test_drop_keeps_the_data(salted, tmp_path, capsys):
    contract = _contract(tmp_path, "quarantine_batch")
    raw = storage.write_batch(_frame([0]), "raw", "people", PARTITION)
    with pytest.raises(ContractViolation):
        validate_batch(raw.ref, contract)
    held_ref = storage.ref_in_zone(raw.ref, "quarantine")

    code, out = _run("quarantine", "drop", held_ref, "--by", "bob", "--note", "junk", capsys=capsys)
    assert code == 0 and "dropped" in out
    fs = storage.filesystem()
    marker = json.loads(fs.cat_file(f"{held_ref.removeprefix('s3://')}/_dropped.json"))
    assert marker["by"] == "bob" and marker["reason"] == "junk"
    assert storage.read_manifest(held_ref).rows == 10  # nothing deleted
    assert held_ref not in {i.ref for i in quarantine.held("people")}
    with pytest.raises(quarantine.QuarantineError, match="already dropped"):
        quarantine.release(held_ref, contract=contract)
    assert not storage.committed_in_zone([raw.ref], "validated")


def test_release_bad_rows_joins_the_good_ones(salted, tmp_path, capsys):
    contract = _contract(tmp_path, "{mode: quarantine_rows, max_bad_fraction: 0.3}")
    raw = storage.write_batch(_frame([4, 5]), "raw", "people", PARTITION)
    outcome = validate_batch(raw.ref, contract)
    assert outcome.status == "rows_quarantined"
    held_ref = outcome.quarantine.ref

    (item,) = [i for i in quarantine.held("people") if i.ref == held_ref]
    assert item.kind == "rows" and item.rows == 2 and item.validated_rows == 8
    info = quarantine.summary(held_ref)
    assert info["failed"][0]["rule"] == "people.age.max"

    record = quarantine.release(held_ref, by="carol", contract=contract)
    released = storage.read_manifest(record["validated"])
    assert released.rows == 10 and released.extra["released_by"] == "carol"
    assert held_ref in released.upstream
    rows = storage.read_batch(released)
    assert sorted(rows["id"]) == list(range(10)) and "_failed_rules" not in rows
    assert rows["email"].str.fullmatch("[0-9a-f]{64}").all()
    # the newest validated batch of the partition is the complete one
    latest = storage.latest_batches("validated", "people")[PARTITION]
    assert latest.ref == released.ref


def test_unknown_batch_is_an_error(s3_server, capsys):
    code = cli.main(["quarantine", "show", "s3://quarantine/people/date=2024-05-01/nope"])
    assert code == 1
    assert "no quarantined batch" in capsys.readouterr().err
