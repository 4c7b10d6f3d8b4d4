"""The contract's feature vocabulary is checked on load: unknown ops, wrong column types and
name clashes are refused with `file:line: key: message`; the checks know the same vocabulary
as the code that computes it."""

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
