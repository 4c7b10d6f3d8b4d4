from __future__ import annotations

import pytest

from ml import contracts

pytestmark = pytest.mark.unit


def test_every_shipped_contract_loads():
    names = contracts.available_datasets()
    assert {"flights", "weather"} <= set(names)
    for name in names:
        c = contracts.load_contract(name)
        assert c.dataset == name
        assert len(c.hash) == 16


def test_flights_contract_declares_features_target_and_model():
    c = contracts.load_contract("flights")
    assert c.features["joins"][0]["keys"] == ["origin", "time_hour"]
    assert c.target["threshold"] == 15
    assert c.model_name == "flights_delay"
    assert "time_hour" in c.timestamp_columns()


def test_hash_changes_with_content(tmp_path):
    text = (contracts.CONTRACTS_DIR / "weather.yaml").read_text()
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(text)
    b.write_text(text.replace("max: 130", "max: 131"))
    assert contracts.load_contract(a).hash != contracts.load_contract(b).hash


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("dataset: x\nowner: o\ncolumns: {a: {type: int}}\nbogus: 1\n", "unknown key(s) ['bogus']"),
        ("dataset: x\nowner: o\ncolumns: {a: {type: integer}}\n", "columns.a.type"),
        ("dataset: x\nowner: o\ncolumns: {a: {type: int, max: high}}\n", "columns.a.max"),
        (
            "dataset: x\nowner: o\ncolumns: {a: {type: int, colour: red}}\n",
            "columns.a: unknown key(s)",
        ),
        ("dataset: x\ncolumns: {a: {type: int}}\n", "missing required key(s) ['owner']"),
        ("- just\n- a list\n", "a contract is a mapping"),
        ("dataset: x\nowner: o\ncolumns: {a: int}\nfailure_policy: ignore\n", "failure_policy"),
    ],
)
def test_bad_contracts_name_file_and_key(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(contracts.ContractError) as err:
        contracts.load_contract(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_contract_file_is_named(tmp_path):
    with pytest.raises(contracts.ContractError, match="no such contract file"):
        contracts.load_contract(tmp_path / "nope.yaml")


def test_row_keys_must_be_columns(tmp_path):
    from ml import features

    text = (
        (contracts.CONTRACTS_DIR / "flights.yaml")
        .read_text()
        .replace("row_keys: [year,", "row_keys: [yeer,")
    )
    path = tmp_path / "flights.yaml"
    path.write_text(text)
    with pytest.raises(contracts.ContractError, match=r"features.row_keys: \['yeer'\]"):
        features.row_keys(contracts.load_contract(path))
    assert "flight" in features.row_keys(contracts.load_contract("flights"))
