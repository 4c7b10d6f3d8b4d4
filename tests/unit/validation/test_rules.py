"""The rules of a contract as plain data: ids, kinds, descriptions (no GX needed)."""

from __future__ import annotations

import pytest

from ml.contracts import ContractError, load_contract
from ml.validation.rules import describe_rule, kinds_of, rule_ids, rule_specs, unique_columns
from tests.unit.validation._data import TOY_CONTRACT

pytestmark = pytest.mark.unit


def test_unknown_table_rule_is_refused(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(TOY_CONTRACT.replace("table:\n", "table:\n  freshness: {max_age: 1d}\n"))
    with pytest.raises(ContractError, match=r"odd.yaml:10: table.freshness: unknown key\(s\)"):
        rule_ids(load_contract(path))


def test_kinds_and_uniqueness_columns(toy, flights):
    assert kinds_of(toy, ["toy.score.max", "toy.id.not_null"]) == {"max", "not_null"}
    assert kinds_of(toy, []) == frozenset()
    by_id = {s.rule: s for s in rule_specs(flights)}
    key = by_id["flights.table.unique.carrier+flight+origin+time_hour"]
    assert unique_columns(key) == ("carrier", "flight", "origin", "time_hour")
    assert unique_columns(by_id["flights.dep_delay.max"]) is None  # not a uniqueness rule
    assert unique_columns(next(s for s in rule_specs(toy) if s.kind == "unique")) == ("id",)
    assert describe_rule(by_id["flights.dep_delay.max"]) == (
        "expect_column_values_to_be_between(column='dep_delay', max_value=1500)"
    )
    assert describe_rule(key).endswith("[whole batch]")
