"""The target section's checks: each kind's keys, impossible combinations refused with
`file:line: key: message`."""

from __future__ import annotations

import pytest

from ml import contracts

pytestmark = pytest.mark.unit

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
