"""PII columns dropped or hashed with a salt; hashing without a salt is refused."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pytest

from ml.contracts import load_contract
from ml.settings import Settings
from ml.validation.pii import PIIError, apply_pii, pii_salt
from tests.unit.validation._data import TOY_CONTRACT, toy_frame

pytestmark = pytest.mark.unit


def test_pii_drop_and_hash(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_CONTRACT + "pii: {name: hash, flag: drop}\n")
    contract = load_contract(path)
    with pytest.raises(PIIError, match=r"hashes PII column\(s\) \['name'\].*MLPIPE_PII_SALT"):
        pii_salt(contract, Settings(pii_salt=None))
    assert pii_salt(contract, Settings(pii_salt="pepper")) == b"pepper"
    assert pii_salt(load_contract("flights"), Settings(pii_salt=None)) is None  # hashes nothing
    frame = toy_frame()
    out = apply_pii(frame, contract, b"pepper")
    assert list(out.columns) == ["id", "score", "name", "at"]
    assert out.loc[0, "name"] == hmac.new(b"pepper", b"a", hashlib.sha256).hexdigest()
    assert pd.isna(out.loc[1, "name"])  # missing stays missing
    assert list(apply_pii(frame, contract, b"pepper")["name"]) == list(out["name"])  # stable
    assert apply_pii(frame, contract, b"salt").loc[0, "name"] != out.loc[0, "name"]
    assert list(frame.columns) == ["id", "score", "name", "at", "flag"]  # input untouched


def test_report_samples_of_pii_columns_are_redacted(tmp_path):
    """A broken rule on a PII column shows counts, never the values (reports are read widely)."""
    from ml.validation.report import REDACTED
    from tests.unit.validation._data import check

    path = tmp_path / "toy.yaml"
    contract_text = TOY_CONTRACT.replace(
        "name:  {type: string}", "name:  {type: string, regex: '^[a-z]$'}"
    )
    path.write_text(contract_text + "  unique: [[id, name]]\npii: {name: hash}\n")
    contract = load_contract(path)
    frame = toy_frame(
        id=pd.Series([1, 1, 3], dtype="int64"),
        name=pd.Series(["alice@example.org", "alice@example.org", "c"], dtype="str"),
    )
    report = check(frame, contract)
    by_rule = {r["rule"]: r for r in report.rules}
    regex = by_rule["toy.name.regex"]
    assert not regex["success"] and regex["unexpected_count"] == 2
    assert regex["unexpected_sample"] == [REDACTED, REDACTED]
    assert "alice" not in report.to_json()
    assert "alice" not in report.to_html()


def test_undeclared_columns_never_reach_validated(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_CONTRACT)
    frame = toy_frame().assign(ssn="078-05-1120")
    assert "ssn" not in apply_pii(frame, load_contract(path), None).columns
    assert "ssn" in frame.columns  # input untouched
