"""The contract's training sections are checked on load, refused with `file:line: key: message`:
the feature vocabulary (unknown ops, wrong column types, name clashes; the checks know the same
vocabulary as the code that computes it) and the target (each kind's keys, impossible
combinations)."""

from __future__ import annotations

import pytest

from ml import contract_training as ct
from ml import contracts
from ml.features import derived

pytestmark = pytest.mark.unit

DAILY = """\
dataset: daily
owner: o@example.org
partition: {column: at, granularity: day}
columns:
  at:     {type: timestamp, nullable: false}
  shop:   {type: string}
  sales:  {type: float}
  items:  {type: int}
  open:   {type: bool}
features:
  lags:
    sales_1d: {column: sales, partitions: 1, keys: [shop]}
  numeric: [sales_1d]
  derived:
    weekday: {op: calendar, column: at, part: weekday, as: category}
    hour:    {op: calendar, column: at, part: hour, as: cycle, timezone: Europe/Paris}
    per_item: {op: ratio, columns: [sales, items]}
    trend:   {op: difference, columns: [sales, sales_1d]}
    band:    {op: bucket, column: sales, bounds: [0, 100, 1000], labels: [neg, low, mid, high]}
    key:     {op: concat, columns: [shop, weekday]}
"""


def _load(tmp_path, text):
    path = tmp_path / "daily.yaml"
    path.write_text(text)
    return contracts.load_contract(path)


def test_a_good_vocabulary_loads(tmp_path):
    contract = _load(tmp_path, DAILY)
    numeric, categorical = derived.feature_columns(contract)
    assert numeric == ["sales_1d", "hour_sin", "hour_cos", "per_item", "trend"]
    assert categorical == ["weekday", "band", "key"]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("op: ratio", "op: power", 17, r"derived.per_item: needs `op`, one of .*got 'power'"),
        ("column: at, part: weekday", "column: shop, part: weekday", 15, "a string column"),
        ("columns: [sales, items]", "columns: [sales, shop]", 17, "'shop' is a string column"),
        ("columns: [sales, items]", "columns: [sales]", 17, "ratio needs two number columns"),
        ("columns: [shop, weekday]", "columns: [shop, sales]", 20, "'sales' is a float column"),
        ("    band:", "    sales:", 19, "'sales' is already a column"),
        ("    key:", "    hour_sin:", 20, "'hour_sin' is already"),
        ("    trend:", "    target:", 18, "'target' is already"),
        ("part: hour, as: cycle", "part: year, as: cycle", 16, "year has no cycle"),
        ("bounds: [0, 100, 1000]", "bounds: [0, 1000, 100]", 19, "increasing numbers"),
        ("labels: [neg, low, mid, high]", "labels: [a]", 19, "must be 4 strings"),
        ("as: category}", "as: cycle, sep: x}", 15, r"unknown key\(s\) \['sep'\]"),
        ("partitions: 1,", "partitions: 0,", 12, r"lags.sales_1d.partitions: must be a whole"),
        ("keys: [shop]}", "keys: [shop], agg: mean}", None, None),
        ("keys: [shop]}", "keys: [nope]}", 12, r"\['nope'\] are not columns"),
        ("column: sales, partitions", "column: temp, partitions", 12, "'temp' is not a column"),
        ("sales_1d: {column: sales,", "x_1d: {column: shop, agg: mean,", 12, "mean needs a number"),
        ("{column: at, granularity: day}", "{column: at, granularity: month}", 11, "by day"),
    ],
)
def test_bad_vocabulary_names_file_line_and_key(tmp_path, old, new, line, message):
    assert old in DAILY
    text = DAILY.replace(old, new, 1)
    if line is None:  # a good variant
        _load(tmp_path, text)
        return
    with pytest.raises(contracts.ContractError, match=message) as err:
        _load(tmp_path, text)
    assert f"daily.yaml:{line}:" in str(err.value)


def test_the_checks_and_the_code_know_the_same_vocabulary():
    assert set(ct.DERIVED_OPS) == set(derived.OPS)
    assert ct.CALENDAR_PARTS == derived.CALENDAR_PARTS
    assert ct.TIME_OF_DAY_PARTS == derived.TIME_OF_DAY_PARTS
    assert {op: enc[0] for op, enc in ct.ENCODINGS_BY_OP.items() if enc} == (
        derived.DEFAULT_ENCODING
    )
    assert {e for enc in ct.ENCODINGS_BY_OP.values() for e in enc} == set(derived.ENCODINGS)
    assert {derived.TARGET} == ct.RESERVED_NAMES


# --- the target section ---------------------------------------------------------------------

BASE = """dataset: shop
owner: team@example.org
columns:
  amount: {type: float, nullable: true, min: -5, max: 100}
  count:  {type: int, min: 0}
  weather: {type: string}
  segment: {type: string}
features:
  numeric: [amount]
  categorical: [segment]
target:
  source_column: weather
  kind: multiclass
  classes: [rain, sun]
  other: true
model:
  metric: macro_f1
"""


def load(tmp_path, text: str):
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    return contracts.load_contract(path), path


@pytest.mark.parametrize(
    "target, metric",
    [
        ("source_column: amount\n  threshold: 15", "roc_auc"),
        ("source_column: amount\n  task: binary_classification\n  threshold: 15", "ece"),
        ("source_column: weather\n  kind: binary\n  positive: [rain, storm]", "roc_auc"),
        ("source_column: weather\n  kind: multiclass\n  classes: [rain, sun]", "log_loss"),
        (
            "source_column: amount\n  kind: multiclass\n  bins: [0, 10]\n  classes: [a, b, c]\n"
            "  min_class_fraction: 0.05",
            "macro_f1",
        ),
        ("source_column: count\n  kind: regression\n  transform: log1p", "rmse"),
        ("source_column: amount\n  kind: regression", "r2"),
    ],
)
def test_every_kind_loads(tmp_path, target, metric):
    text = BASE.split("target:")[0] + f"target:\n  {target}\nmodel:\n  metric: {metric}\n"
    contract, _ = load(tmp_path, text)
    assert contract.target["source_column"] in {"amount", "weather", "count"}


@pytest.mark.parametrize(
    "old, new, key, message",
    [
        ("kind: multiclass", "kind: ranking", "target.kind", "must be one of"),
        ("kind: multiclass", "kind: multiclass\n  task: regression", "target.task", "contradicts"),
        ("other: true", "other: true\n  bins: [1]", "target.bins", "needs a numeric source"),
        ("other: true", "other: true\n  threshold: 3", "target.threshold", "does not apply"),
        ("other: true", "other: true\n  transform: log1p", "target.transform", "does not apply"),
        ("classes: [rain, sun]", "classes: [rain]", "target.classes", "at least 2"),
        ("classes: [rain, sun]", "classes: [rain, rain]", "target.classes", "distinct"),
        ("classes: [rain, sun]", "classes: [rain, other]", "target.classes", "lists 'other'"),
        ("other: true", "min_class_fraction: 0.7", "target.min_class_fraction", "(0, 0.5)"),
        ("metric: macro_f1", "metric: roc_auc", "model.metric", "does not measure a multiclass"),
        ("model:\n  metric: macro_f1\n", "", "target.kind", "needs model.metric"),
        ("source_column: weather", "source_column: wind", "target.source_column", "not a column"),
        ("other: true", "other: true\n  missing: zero", "target.missing", "must be 'drop'"),
    ],
)
def test_impossible_targets_are_refused_with_file_line_and_key(tmp_path, old, new, key, message):
    assert old in BASE
    text = BASE.replace(old, new, 1)
    with pytest.raises(contracts.ContractError) as err:
        load(tmp_path, text)
    path = tmp_path / "shop.yaml"
    text_error = str(err.value)
    assert text_error.startswith(f"{path}:"), text_error
    assert f": {key}: " in text_error and message in text_error, text_error


@pytest.mark.parametrize(
    "target, key, message",
    [
        ("source_column: weather\n  kind: binary\n  threshold: 3", "target.threshold", "numeric"),
        ("source_column: amount\n  kind: binary", "target", "exactly one of"),
        (
            "source_column: amount\n  kind: binary\n  threshold: 3\n  positive: [a]",
            "target",
            "exactly one of",
        ),
        ("source_column: weather\n  kind: regression", "target.source_column", "numeric column"),
        (
            "source_column: amount\n  kind: regression\n  transform: log1p",
            "target.transform",
            "min >= 0",
        ),
        (
            "source_column: count\n  kind: regression\n  transform: sqrt",
            "target.transform",
            "log1p",
        ),
        (
            "source_column: amount\n  kind: multiclass\n  bins: [5, 1]\n  classes: [a, b, c]",
            "target.bins",
            "increase",
        ),
        (
            "source_column: amount\n  kind: multiclass\n  bins: [1, 5]\n  classes: [a, b]",
            "target.classes",
            "make 3 classes",
        ),
        (
            "source_column: amount\n  kind: multiclass\n  bins: [1]\n  classes: [a, b]\n  other: true",
            "target.other",
            "does not apply to bins",
        ),
    ],
)
def test_kind_rules(tmp_path, target, key, message):
    metric = "rmse" if "regression" in target else "macro_f1" if "multi" in target else "roc_auc"
    text = BASE.split("target:")[0] + f"target:\n  {target}\nmodel:\n  metric: {metric}\n"
    with pytest.raises(contracts.ContractError) as err:
        load(tmp_path, text)
    assert f": {key}: " in str(err.value) and message in str(err.value), str(err.value)


def test_reference_contracts_of_every_kind_load():
    kinds = {
        name: contracts.load_contract(name).target.get("kind", "binary")
        for name in ("flights", "flights_delay_minutes", "flights_delay_class")
    }
    assert kinds == {
        "flights": "binary",
        "flights_delay_minutes": "regression",
        "flights_delay_class": "multiclass",
    }
    assert contracts.load_contract("flights").target["task"] == "binary_classification"
