from __future__ import annotations

import re

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
    from ml.features.derived import row_keys

    text = (
        (contracts.CONTRACTS_DIR / "flights.yaml")
        .read_text()
        .replace("row_keys: [year,", "row_keys: [yeer,")
    )
    path = tmp_path / "flights.yaml"
    path.write_text(text)
    with pytest.raises(contracts.ContractError, match=r"row_keys: \['yeer'\]"):
        row_keys(contracts.load_contract(path))
    assert "flight" in row_keys(contracts.load_contract("flights"))


def test_lookup_contract_rules_are_checked(tmp_path):
    text = contracts.contract_path("flights").read_text()
    bad = text.replace("right_keys: [faa]", "right_keys: [faa, name]")
    path = tmp_path / "flights.yaml"
    path.write_text(bad)
    with pytest.raises(
        contracts.ContractError,
        match=r"flights.yaml:\d+: features.lookups\[1\].right_keys: must name 1 key",
    ):
        contracts.load_contract(path)
    path.write_text(text.replace("keys: [dest]", "keys: [destination]"))
    with pytest.raises(contracts.ContractError, match=r"\['destination'\] are not columns"):
        contracts.load_contract(path)
    path.write_text(text.replace("plane_seats,\n", "seats,\n"))
    with pytest.raises(contracts.ContractError, match=r"features.numeric: \['seats'\]"):
        contracts.load_contract(path)


# --- the format, checked on load: file, line and key --------------------------------------------

GOOD = """\
dataset: shop
owner: o@example.org
partition: {column: date, granularity: day}
columns:
  order_id: {type: int, nullable: false}
  customer: {type: string}
  email:    {type: string}
  amount:   {type: float, min: 0}
  at:       {type: timestamp}
table:
  row_count: {min: 1}
  unique: [[order_id], [customer, at]]
  freshness: {column: at, max_lag_hours: 2}
pii: {email: drop, customer: hash}
failure_policy: {mode: quarantine_rows, max_bad_fraction: 0.1, on_failure: warn}
features:
  row_keys: [order_id]
  joins:
    - {dataset: customers, keys: [customer], columns: [segment]}
  numeric: [amount, segment_size]
  categorical: [segment]
  derived: {segment_size: {op: bucket, column: amount, bounds: [10, 100], as: number}}
"""


def test_new_rule_kinds_load(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text(GOOD)
    c = contracts.load_contract(path)
    assert c.unique_keys == (("order_id",), ("customer", "at"))
    assert c.freshness == contracts.Freshness("at", 2.0)
    assert c.pii == {"email": "drop", "customer": "hash"}
    assert c.policy == contracts.FailurePolicy("quarantine_rows", 0.1, "warn")
    assert c.failure_policy == "quarantine_rows"
    assert contracts.load_contract("flights").policy == contracts.FailurePolicy()


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("min: 0}", "min: high}", 8, "columns.amount.min: must be a number, got 'high'"),
        (
            "nullable: false}",
            "nullable: nope}",
            5,
            "columns.order_id.nullable: must be true or false",
        ),
        ("{type: string}\n  email", "{type: text}\n  email", 6, "columns.customer.type: 'text'"),
        ("{type: timestamp}", "{type: timestamp, max: 3}", 9, "columns.at.max: only int and float"),
        (
            "row_count: {min: 1}",
            "row_count: {min: 1, most: 3}",
            11,
            "table.row_count: unknown key(s) ['most']",
        ),
        (
            "row_count: {min: 1}",
            "row_count: {min: -1}",
            11,
            "table.row_count.min: must be a whole number",
        ),
        ("[customer, at]]", "[customer, when]]", 12, "table.unique[1]: ['when'] are not columns"),
        (
            "unique: [[order_id], [customer, at]]",
            "unique: [order_id]",
            12,
            "table.unique[0]: must be a list",
        ),
        (
            "column: at, max",
            "column: amount, max",
            13,
            "'amount' is a float column, freshness needs a timestamp",
        ),
        (
            "column: at, max",
            "column: nope, max",
            13,
            "table.freshness.column: 'nope' is not a column",
        ),
        (
            "max_lag_hours: 2",
            "max_lag_hours: soon",
            13,
            "table.freshness.max_lag_hours: must be a number",
        ),
        ("table:\n", "table:\n  speed: fast\n", 11, "table: unknown key(s) ['speed']"),
        ("email: drop", "mail: drop", 14, "pii.mail: 'mail' is not a column"),
        ("email: drop", "email: shred", 14, "pii.email: 'shred' is not one of ['drop', 'hash']"),
        (
            "mode: quarantine_rows",
            "mode: quarantine_all",
            15,
            "failure_policy.mode: 'quarantine_all'",
        ),
        (
            "max_bad_fraction: 0.1",
            "max_bad_fraction: 2",
            15,
            "failure_policy.max_bad_fraction: must be a number in 0..1",
        ),
        ("on_failure: warn", "on_failure: shrug", 15, "failure_policy.on_failure: 'shrug'"),
        ("max_bad_fraction: 0.1, ", "", 15, "mode quarantine_rows needs max_bad_fraction"),
        (
            "row_keys: [order_id]",
            "row_keys: [order_id, email]",
            17,
            "row_keys: ['email'] are not columns",
        ),
        (
            "keys: [customer]",
            "keys: [client]",
            19,
            "features.joins[0].keys: ['client'] are not columns",
        ),
        (
            "{dataset: customers, ",
            "{dataset: customers, how: left, ",
            19,
            "features.joins[0]: unknown key(s) ['how']",
        ),
        (
            "numeric: [amount, ",
            "numeric: [amount, price, ",
            20,
            "features.numeric: ['price'] are not columns",
        ),
        ("categorical: [segment]", "categorical: [region]", 21, "features.categorical: ['region']"),
        (
            "derived: {segment_size: {op: bucket, column: amount, bounds: [10, 100], as: number}}",
            "derived: {segment_size: {op: bucket, column: amount, bounds: [10, 100], as: number}}\n  colour: red",
            23,
            "features: unknown key(s) ['colour']",
        ),
    ],
)
def test_bad_contract_names_file_line_and_key(tmp_path, old, new, line, message):
    assert old in GOOD
    path = tmp_path / "shop.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(contracts.ContractError) as err:
        contracts.load_contract(path)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert message in str(err.value)


def test_model_params_are_refused_not_silently_ignored(tmp_path):
    # Nothing ever read `model.params`: training parameters are the train DAG's Params.
    path = tmp_path / "shop.yaml"
    path.write_text(GOOD + "model:\n  name: shop_model\n  params: {epochs: 3}\n")
    with pytest.raises(contracts.ContractError) as err:
        contracts.load_contract(path)
    assert str(err.value).startswith(f"{path}:25: model.params: is not supported"), str(err.value)
    assert "Params of the train DAG" in str(err.value)
    path.write_text(GOOD + "model:\n  name: shop_model\n  metric: roc_auc\n  margin: 0.01\n")
    assert contracts.load_contract(path).model_name == "shop_model"


def test_joins_and_lookups_are_checked_alike(tmp_path):
    path = tmp_path / "shop.yaml"
    join = "  joins:\n    - {dataset: customers, keys: [customer], columns: [segment]}\n"
    assert join in GOOD
    path.write_text(GOOD.replace(join, join.replace("joins", "lookups")))
    assert contracts.load_contract(path).features["lookups"][0]["dataset"] == "customers"
    for kind in ("joins", "lookups"):
        path.write_text(GOOD.replace(join, f"  {kind}:\n    - {{dataset: c, keys: [customer]}}\n"))
        with pytest.raises(
            contracts.ContractError,
            match=rf"shop.yaml:19: features.{kind}\[0\]: missing key 'columns'",
        ):
            contracts.load_contract(path)
        path.write_text(GOOD.replace(join, f"  {kind}: nope\n"))
        with pytest.raises(
            contracts.ContractError, match=f"features.{kind}: must be a list of {kind}"
        ):
            contracts.load_contract(path)
    # Only a lookup renames its keys or columns.
    path.write_text(GOOD.replace("columns: [segment]}", "columns: [segment], prefix: c_}"))
    with pytest.raises(
        contracts.ContractError, match=r"features.joins\[0\]: unknown key\(s\) \['prefix'\]"
    ):
        contracts.load_contract(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("dataset: x\nowner: o\ncolumns: {a: [\n")
    with pytest.raises(contracts.ContractError, match=r"broken.yaml:\d+: not valid YAML"):
        contracts.load_contract(path)


# --- mlpipe contract check ---------------------------------------------------------------------


def test_contract_check_prints_rules(capsys):
    from ml import cli

    code = cli.main(["contract", "check", "flights", str(contracts.CONTRACTS_DIR / "weather.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "flights.yaml: OK" in out and "weather.yaml: OK" in out
    assert "flights.dep_delay.max" in out and "expect_column_values_to_be_between" in out
    assert "flights.table.unique.carrier+flight+origin+time_hour" in out
    assert "flights.table.freshness" in out and "[whole batch]" in out


def test_contract_check_fails_on_a_bad_contract(tmp_path, capsys):
    from ml import cli

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("min: 0}", "min: high}"))
    code = cli.main(["contract", "check", "flights", str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    assert "flights.yaml: OK" in captured.out
    assert f"{bad}:8: columns.amount.min: must be a number, got 'high'" in captured.err


def test_input_rules_default_and_declared(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("dataset: x\nowner: o\ncolumns: {a: int}\n")
    c = contracts.load_contract(path)
    assert (c.extra_columns, c.na_values, c.limits) == ("reject", (), {})
    path.write_text(
        "dataset: x\nowner: o\ncolumns: {a: int}\nextra_columns: drop\nna_values: [NA, 'n/a']\n"
        "limits: {max_rows: 10, max_bytes: 1000}\n"
    )
    c = contracts.load_contract(path)
    assert (c.extra_columns, c.na_values) == ("drop", ("NA", "n/a"))
    assert c.limits == {"max_rows": 10, "max_bytes": 1000}


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ("extra_columns: allow\n", "extra_columns: 'allow' is not one of"),
        ("na_values: NA\n", "na_values: must be a list of strings"),
        ("limits: {max_rows: 0}\n", "limits.max_rows: must be a whole number > 0"),
        ("limits: {rows: 5}\n", "unknown key(s) ['rows']"),
    ],
)
def test_bad_input_rules_are_named(tmp_path, tail, message):
    path = tmp_path / "x.yaml"
    path.write_text("dataset: x\nowner: o\ncolumns: {a: int}\n" + tail)
    with pytest.raises(contracts.ContractError, match=re.escape(message)):
        contracts.load_contract(path)


@pytest.mark.parametrize("name", ["_failed_rules", "' a'", "'a '"])
def test_reserved_or_padded_column_names_are_refused(tmp_path, name):
    path = tmp_path / "x.yaml"
    path.write_text(f"dataset: x\nowner: o\ncolumns: {{{name}: int}}\n")
    with pytest.raises(contracts.ContractError, match="column name"):
        contracts.load_contract(path)
