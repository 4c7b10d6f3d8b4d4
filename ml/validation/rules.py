"""The rules of a data contract as plain data: rule ids, kinds, and the expectation each becomes.

Every contract rule becomes exactly one rule (`RuleSpec`) with a stable id
(`flights.dep_delay.max`, `flights.table.row_count`), which reports and errors name. No Great
Expectations and no pandas here: the CLI lists rules without them.

| rule id | from the contract | expectation |
| --- | --- | --- |
| `<dataset>.<column>.exists` | every column | `ExpectColumnToExist` |
| `<dataset>.<column>.type` | `type:` | `ExpectColumnDtypeToMatch` (see `DTYPES`) |
| `<dataset>.<column>.not_null` | `nullable: false` | `ExpectColumnValuesToNotBeNull` |
| `<dataset>.<column>.min` / `.max` | `min:` / `max:` | `ExpectColumnValuesToBeBetween` (one bound each, inclusive) |
| `<dataset>.<column>.allowed` | `allowed:` | `ExpectColumnValuesToBeInSet` |
| `<dataset>.<column>.regex` | `regex:` | `ExpectColumnValuesToMatchRegex` |
| `<dataset>.<column>.unique` | `unique: true` | `ExpectColumnValuesToBeUnique` |
| `<dataset>.table.row_count` | `table.row_count` | `ExpectTableRowCountToBeBetween` |
| `<dataset>.table.unique.<a>+<b>` | `table.unique: [[a, b]]` | computed (pandas / Dask), reported as `expect_compound_columns_to_be_unique` |
| `<dataset>.table.freshness` | `table.freshness` | computed, reported as `expect_column_max_to_be_between` |
| `<dataset>.table.extra_columns` | every contract (`extra_columns`, default `reject`) | computed, reported as `expect_table_columns_to_match_set`: fails on undeclared columns under `reject`; under `drop` passes and lists them (they never reach `validated`) |

Value rules ignore missing values (only `not_null` looks at them). `unique` (a column or a key)
counts every row whose value occurs more than once (both copies of a duplicate); rows with a
missing key value are left out of key uniqueness. Freshness: the newest value of the column must
be no older than the end of the batch's partition (`date=2013-01-01` -> 2013-01-02 00:00, UTC for
tz-aware columns) minus `max_lag_hours`; it never looks at the clock, so re-validation agrees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ml.contracts import Contract, load_contract

FAILED_RULES = "_failed_rules"  # column of quarantined rows: the rule ids each row broke

# Accepted pandas dtypes per contract type, matched against `str(series.dtype)`: an entry is a
# dtype name, or a prefix when it ends in `*`. Names cover numpy, pandas nullable and pyarrow-backed
# (`ArrowDtype`) dtypes, so a batch is accepted however pandas 3, a parquet round trip or Dask
# typed it.
_INTS = tuple(
    f"{kind}{bits}" for kind in ("int", "uint", "Int", "UInt") for bits in (8, 16, 32, 64)
)
_ARROW_INTS = tuple(
    f"{kind}{bits}[pyarrow]" for kind in ("int", "uint") for bits in (8, 16, 32, 64)
)
DTYPES: dict[str, tuple[str, ...]] = {
    # Any integer dtype, numpy (`int64`) or nullable (`Int64`). Floats are refused, even when
    # every value is integral: an int column that comes back as float64 lost its type upstream.
    "int": _INTS + _ARROW_INTS,
    # Any float dtype, and any integer dtype too: integers are exact floats, and a float column
    # without missing values may be parsed as int64 (e.g. a day without cancelled flights).
    "float": (
        "float16",
        "float32",
        "float64",
        "Float32",
        "Float64",
        "halffloat[pyarrow]",
        "float[pyarrow]",
        "double[pyarrow]",
        *_INTS,
        *_ARROW_INTS,
    ),
    # pandas 3 `str` (StringDtype, na_value=nan), `string` (StringDtype, na_value=<NA>, python or
    # pyarrow storage) and ArrowDtype strings. An `object` column passes when every non-missing
    # value is a Python `str` (GX checks values one by one for object columns, using `str`).
    "string": ("str", "string", "string[pyarrow]", "large_string[pyarrow]"),
    # datetime64 of any unit, naive or with any time zone, and ArrowDtype timestamps.
    # `datetime64[ns]` is listed by name as well because GX's per-value check of object columns
    # needs one name numpy understands.
    "timestamp": ("datetime64[*", "timestamp[*", "datetime64[ns]"),
    "bool": ("bool", "boolean", "bool[pyarrow]"),
}

# The GX expectation each rule kind becomes (`expectation` in reports). Kinds in
# `GLOBAL_KINDS` need the whole batch at once: on Dask they are computed over the whole batch
# (not per partition); `unique_key` and `freshness` are always computed by us (pandas or Dask)
# and reported under the name of the GX expectation they correspond to.
EXPECTATIONS = {
    "exists": "expect_column_to_exist",
    "type": "expect_column_dtype_to_match",
    "not_null": "expect_column_values_to_not_be_null",
    "min": "expect_column_values_to_be_between",
    "max": "expect_column_values_to_be_between",
    "allowed": "expect_column_values_to_be_in_set",
    "regex": "expect_column_values_to_match_regex",
    "unique": "expect_column_values_to_be_unique",
    "row_count": "expect_table_row_count_to_be_between",
    "unique_key": "expect_compound_columns_to_be_unique",
    "freshness": "expect_column_max_to_be_between",
    "extra_columns": "expect_table_columns_to_match_set",
}
ROW_KINDS = frozenset({"not_null", "min", "max", "allowed", "regex"})  # judged row by row
GLOBAL_KINDS = frozenset({"unique", "row_count", "unique_key", "freshness", "extra_columns"})
COMPUTED_KINDS = frozenset({"unique_key", "freshness", "extra_columns"})  # never a GX expectation


@dataclass(frozen=True)
class RuleSpec:
    """One contract rule, before it becomes an expectation."""

    rule: str  # stable id, e.g. `flights.dep_delay.max`
    kind: str  # exists, type, not_null, min, max, allowed, regex, unique, row_count
    column: str | None  # None for table rules
    kwargs: dict[str, Any] = field(default_factory=dict)


def as_contract(contract: Contract | str) -> Contract:
    """A contract as it is, or loaded by dataset name or path."""
    return contract if isinstance(contract, Contract) else load_contract(contract)


def _column_rules(contract: Contract) -> list[RuleSpec]:
    ds = contract.dataset
    specs: list[RuleSpec] = []
    for col in contract.columns:
        rules: list[tuple[str, dict[str, Any]]] = [
            ("exists", {}),
            ("type", {"type_list": list(DTYPES[col.type])}),
        ]
        if not col.nullable:
            rules.append(("not_null", {}))
        if col.min is not None:
            rules.append(("min", {"min_value": col.min}))
        if col.max is not None:
            rules.append(("max", {"max_value": col.max}))
        if col.allowed is not None:
            rules.append(("allowed", {"value_set": list(col.allowed)}))
        if col.regex is not None:
            rules.append(("regex", {"regex": col.regex}))
        if col.unique:
            rules.append(("unique", {}))
        specs += [RuleSpec(f"{ds}.{col.name}.{kind}", kind, col.name, kw) for kind, kw in rules]
    return specs


def _table_rules(contract: Contract) -> list[RuleSpec]:
    ds = contract.dataset
    specs: list[RuleSpec] = []
    if "row_count" in contract.table:
        bounds = contract.table["row_count"]
        specs.append(
            RuleSpec(
                f"{ds}.table.row_count",
                "row_count",
                None,
                {"min_value": bounds.get("min"), "max_value": bounds.get("max")},
            )
        )
    for key in contract.unique_keys:
        specs.append(
            RuleSpec(f"{ds}.table.unique.{'+'.join(key)}", "unique_key", None, {"columns": key})
        )
    if contract.freshness is not None:
        f = contract.freshness
        specs.append(
            RuleSpec(
                f"{ds}.table.freshness",
                "freshness",
                f.column,
                {"max_lag_hours": f.max_lag_hours},
            )
        )
    specs.append(
        RuleSpec(
            f"{ds}.table.extra_columns",
            "extra_columns",
            None,
            {"declared": contract.column_names, "policy": contract.extra_columns},
        )
    )
    return specs


def undeclared(contract: Contract, columns: Iterable[str]) -> list[str]:
    """The columns a contract does not declare and does not keep, in their order."""
    if contract.extra_columns == "keep":
        return []
    declared = set(contract.column_names)
    return [str(c) for c in columns if str(c) not in declared]


def rule_specs(contract: Contract) -> list[RuleSpec]:
    """Every rule of a contract, in contract order: column by column, then table rules."""
    return _column_rules(contract) + _table_rules(contract)


def rule_ids(contract: Contract) -> list[str]:
    return [s.rule for s in rule_specs(contract)]


def kinds_of(contract: Contract, rules: Iterable[str]) -> frozenset[str]:
    """The kinds of the given rule ids of a contract (e.g. of a report's failed rules)."""
    wanted = set(rules)
    return frozenset(spec.kind for spec in rule_specs(contract) if spec.rule in wanted)


def unique_columns(spec: RuleSpec) -> tuple[str, ...] | None:
    """The columns a uniqueness rule (a column's or a key's) looks at; None for other rules."""
    if spec.kind == "unique_key":
        return tuple(spec.kwargs["columns"])
    if spec.kind == "unique":
        return (spec.column,)
    return None


def describe_rule(spec: RuleSpec) -> str:
    """`expect_...(column=..., key=value)`: what a rule checks, for people (no GX needed)."""
    args = ([f"column={spec.column!r}"] if spec.column else []) + [
        f"{k}={v!r}" for k, v in spec.kwargs.items() if k != "type_list"
    ]
    if "type_list" in spec.kwargs:
        args.append(f"dtypes={len(spec.kwargs['type_list'])} names")
    where = " [whole batch]" if spec.kind in GLOBAL_KINDS else ""
    return f"{EXPECTATIONS[spec.kind]}({', '.join(args)}){where}"
