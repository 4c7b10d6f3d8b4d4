"""Checks of a contract's training sections, kept as raw mappings: `features` (row keys, joins,
lookups, lags, numeric, categorical, derived), `target`, `split` and `model`."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from ml.contract_yaml import Checker, is_number, show

TRAINING_KEYS = {"features", "target", "split", "model"}  # what preprocessing and training read
FEATURE_KEYS = {
    "row_keys",
    "joins",
    "lookups",
    "lags",
    "numeric",
    "categorical",
    "derived",
    "description",
}
JOIN_KEYS = {"dataset", "keys", "columns"}
LOOKUP_KEYS = JOIN_KEYS | {"right_keys", "prefix"}
REFERENCE_KEYS = {"joins": JOIN_KEYS | {"missing"}, "lookups": LOOKUP_KEYS}
# What a missing partition of a join (or of a lag's earlier partition) does: its rows keep
# missing values that the transform imputes; the day is left out; or the stage fails.
MISSING_POLICIES = ("impute", "skip_day", "fail")
TARGET_KEYS = {"name", "source_column", "threshold", "missing", "task", "description"}
SPLIT_KEYS = {"by", "fractions", "description"}
MODEL_KEYS = {"name", "metric", "margin", "description"}


def check_training_sections(
    check: Checker, raw: dict[str, Any], columns: set[str], pii: dict[str, str]
) -> None:
    """Check the training sections of a contract document whose columns and PII are checked."""
    _features(check, raw.get("features"), columns, pii, raw)
    _target(check, raw, columns, pii)
    _split(check, raw)
    _model(check, raw)


def _features(
    check: Checker, spec: Any, columns: set[str], pii: dict[str, str], raw: dict | None = None
) -> None:
    if spec is None:
        return
    check.mapping(("features",), spec, FEATURE_KEYS)
    usable = {c for c in columns if pii.get(c) != "drop"}
    what = "columns of the contract (PII columns that are dropped do not count)"
    if "row_keys" in spec:
        check.names(("features", "row_keys"), spec["row_keys"], usable, what)
    joined = _references(check, spec, "joins", usable, what)
    joined |= _references(check, spec, "lookups", usable, what)
    types: dict[str, str | None] = {c: t for c, t in column_types(raw or {}).items() if c in usable}
    types.update(dict.fromkeys(joined - set(types)))  # joined: their type is another contract's
    types.update(_lags(check, spec.get("lags"), types, (raw or {}).get("partition")))
    made = _derived(check, spec.get("derived"), types)
    for kind in ("numeric", "categorical"):
        if kind in spec:
            check.names(
                ("features", kind),
                spec[kind],
                set(types) | set(made),
                "columns of the contract, joined columns, lags or derived features",
            )


def _references(
    check: Checker, spec: dict[str, Any], kind: str, usable: set[str], what: str
) -> set[str]:
    """The `features.joins` or `features.lookups` entries; returns the columns they add.

    Only lookups may rename their keys (`right_keys`) and columns (`prefix`): a join entry with
    those keys is refused as unknown keys.
    """
    entries = spec.get(kind, [])
    if not isinstance(entries, list):
        check.fail(("features", kind), f"must be a list of {kind}, got {show(entries)}")
    joined: set[str] = set()
    for i, entry in enumerate(entries):
        where = ("features", kind, i)
        check.mapping(where, entry, REFERENCE_KEYS[kind])
        for key in sorted(JOIN_KEYS - set(entry)):
            check.fail(where, f"missing key {key!r}")
        if not isinstance(entry["dataset"], str):
            check.fail((*where, "dataset"), f"must be a dataset name, got {show(entry['dataset'])}")
        keys = check.names((*where, "keys"), entry["keys"], usable, what)
        right = check.names((*where, "right_keys"), entry.get("right_keys", keys), None, "")
        if len(right) != len(keys):
            check.fail((*where, "right_keys"), f"must name {len(keys)} key(s), like `keys`")
        prefix = entry.get("prefix", "")
        if not isinstance(prefix, str):
            check.fail((*where, "prefix"), f"must be a string, got {show(prefix)}")
        joined |= {prefix + c for c in check.names((*where, "columns"), entry["columns"], None, "")}
        if entry.get("missing", "impute") not in MISSING_POLICIES:
            check.fail((*where, "missing"), f"must be one of {list(MISSING_POLICIES)}")
    return joined


def _target(check: Checker, raw: dict, columns: set[str], pii: dict[str, str]) -> None:
    if "target" not in raw:
        return
    target = check.mapping(("target",), raw["target"], TARGET_KEYS)
    src = target.get("source_column")
    if src is not None and src not in columns:
        check.fail(("target", "source_column"), f"{src!r} is not a column of the contract")
    if src is not None and pii.get(src) == "drop":
        check.fail(("target", "source_column"), f"{src!r} is dropped as PII")
    if "threshold" in target and not is_number(target["threshold"]):
        check.fail(("target", "threshold"), f"must be a number, got {target['threshold']!r}")


def _split(check: Checker, raw: dict) -> None:
    if "split" not in raw:
        return
    split = check.mapping(("split",), raw["split"], SPLIT_KEYS)
    fractions = split.get("fractions", {})
    check.mapping(("split", "fractions"), fractions, {"train", "validation", "test"})
    for k, v in fractions.items():
        if not is_number(v) or not 0 <= v <= 1:
            check.fail(("split", "fractions", k), f"must be a number in 0..1, got {v!r}")


def _model(check: Checker, raw: dict) -> None:
    if "model" not in raw:
        return
    spec = raw["model"]
    if isinstance(spec, dict) and "params" in spec:
        # Nothing ever read it: training parameters are the train DAG's Params.
        check.fail(
            ("model", "params"),
            "is not supported: nothing reads it; set training parameters (epochs, "
            "learning_rate, ...) as Params of the train DAG",
        )
    check.mapping(("model",), spec, MODEL_KEYS)


# --- features.derived and features.lags: the vocabulary ----------------------------------------
# The same table as ml/features/derived.py (which ships inside the model and cannot import this
# module, nor this one it: tests/unit/test_contract_features.py keeps the two equal).

RESERVED_NAMES = {"target"}  # the feature parquet's target column (ml.features.derived.TARGET)
DERIVED_OPS: dict[str, set[str]] = {
    "calendar": {"column", "columns", "part", "timezone"},
    "clock": {"column", "part"},
    "concat": {"columns", "sep"},
    "difference": {"columns"},
    "ratio": {"columns"},
    "bucket": {"column", "bounds", "labels"},
    "hook": {"hook", "columns", "kind"},
}
DERIVED_COMMON_KEYS = {"op", "as", "description"}
ENCODINGS_BY_OP = {
    "calendar": ("number", "category", "cycle"),
    "clock": ("number", "category", "cycle"),
    "concat": ("category",),
    "difference": ("number",),
    "ratio": ("number",),
    "bucket": ("category", "number"),
    "hook": (),
}
CALENDAR_PARTS = {
    "year": None,
    "month": 12,
    "day": 31,
    "weekday": 7,
    "day_of_year": 365.25,
    "hour": 24,
    "minute": 60,
    "minute_of_day": 1440,
}
TIME_OF_DAY_PARTS = ("hour", "minute", "minute_of_day")
NUMBER_TYPES = {"int", "float", "numeric"}
TEXT_TYPES = {"string", "int", "bool", "categorical"}  # what `concat` joins
LAG_KEYS = {"column", "partitions", "keys", "agg", "description"}
LAG_AGGS = {"last", "first", "mean", "sum", "min", "max", "count"}
MAX_LAG_PARTITIONS = 366


def column_types(raw: dict) -> dict[str, str]:
    """Column -> its declared type, from the raw `columns` section (checked before this)."""
    out = {}
    for name, spec in (raw.get("columns") or {}).items():
        out[name] = spec if isinstance(spec, str) else (spec or {}).get("type", "string")
    return out


def _named(check: Checker, where: tuple, section: Any) -> dict:
    if section is None:
        return {}
    if not isinstance(section, dict):
        check.fail(where, f"must be a mapping of feature name -> its spec, got {show(section)}")
    return section


def _new_name(check: Checker, where: tuple, name: Any, taken: dict) -> None:
    if not isinstance(name, str) or not name:
        check.fail(where, f"a feature name must be a string, got {show(name)}")
    if name in taken or name in RESERVED_NAMES:
        check.fail(where, f"{name!r} is already a column, a joined column, a lag or a feature")


def _input(check: Checker, where: tuple, name: Any, types: dict, allowed: set[str], what: str):
    """An input column of a feature: known, and of an allowed type (joined columns, whose type
    another contract declares, pass)."""
    if not isinstance(name, str) or name not in types:
        check.fail(where, f"{show(name)} is not a column, a joined column, a lag or a feature")
    kind = types[name]
    if kind is not None and kind not in allowed:
        check.fail(where, f"{name!r} is a {kind} column; {what}")


def _lags(check: Checker, section: Any, types: dict, partition: Any) -> dict[str, str | None]:
    """`features.lags`: name -> {column, partitions, keys, agg}; returns each lag's type."""
    lags = _named(check, ("features", "lags"), section)
    if lags and (not isinstance(partition, dict) or partition.get("granularity", "day") != "day"):
        check.fail(("features", "lags"), "lags need a dataset partitioned by day")
    own = {c: t for c, t in types.items() if t is not None}
    out: dict[str, str | None] = {}
    for name, spec in lags.items():
        where = ("features", "lags", name)
        _new_name(check, where, name, {**types, **out})
        check.mapping(where, spec, LAG_KEYS)
        if "column" not in spec or "partitions" not in spec:
            check.fail(where, "needs `column` (a column of this dataset) and `partitions` (N >= 1)")
        column = spec["column"]
        if column not in own:
            check.fail((*where, "column"), f"{show(column)} is not a column of this dataset")
        n = spec["partitions"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LAG_PARTITIONS:
            check.fail(
                (*where, "partitions"),
                f"must be a whole number of days in 1..{MAX_LAG_PARTITIONS} (a lag never reads "
                f"the row's own day or a later one), got {show(n)}",
            )
        check.names((*where, "keys"), spec.get("keys", []), set(own), "columns of this dataset")
        agg = spec.get("agg", "last")
        if agg not in LAG_AGGS:
            check.fail((*where, "agg"), f"must be one of {sorted(LAG_AGGS)}, got {show(agg)}")
        if agg in {"mean", "sum", "min", "max"} and own[column] not in NUMBER_TYPES:
            check.fail((*where, "agg"), f"{agg} needs a number column; {column!r} is {own[column]}")
        numeric = agg == "count" or own[column] in NUMBER_TYPES
        out[name] = "numeric" if numeric else "categorical"
    return out


def _derived(check: Checker, section: Any, types: dict) -> dict[str, str]:
    """`features.derived`: name -> {op, ...}; returns the outputs and their kinds."""
    made: dict[str, str] = {}
    for name, spec in _named(check, ("features", "derived"), section).items():
        where = ("features", "derived", name)
        if not isinstance(spec, dict) or spec.get("op") not in DERIVED_OPS:
            check.fail(
                where,
                f"needs `op`, one of {sorted(DERIVED_OPS)}"
                + (f"; got {spec.get('op')!r}" if isinstance(spec, dict) else ""),
            )
        op = spec["op"]
        check.mapping(where, spec, DERIVED_COMMON_KEYS | DERIVED_OPS[op])
        known = {**types, **made}
        encode = _encoding(check, where, spec, op)
        inputs = _derived_inputs(check, where, spec, op, known)
        if op in ("calendar", "clock"):
            _part(check, where, spec, op, encode, inputs, known)
        if op == "bucket":
            _bounds(check, where, spec)
        if op == "hook":
            outputs = {name: _hook(check, where, spec)}
        elif encode == "cycle":
            outputs = {f"{name}_sin": "numeric", f"{name}_cos": "numeric"}
        else:
            outputs = {name: "categorical" if encode == "category" else "numeric"}
        for output in outputs:
            _new_name(check, where, output, known)
        made.update(outputs)
    return made


def _encoding(check: Checker, where: tuple, spec: dict, op: str) -> str | None:
    allowed = ENCODINGS_BY_OP[op]
    encode = spec.get("as", allowed[0] if allowed else None)
    if "as" in spec and encode not in allowed:
        check.fail((*where, "as"), f"{op} features may be {list(allowed) or 'nothing else'}")
    return encode


def _derived_inputs(check: Checker, where: tuple, spec: dict, op: str, known: dict) -> list[str]:
    """The op's input columns, checked for count and type."""
    one, many = "column" in spec, "columns" in spec
    if one == many:
        check.fail(where, f"{op} needs exactly one of `column` or `columns`")
    inputs = [spec["column"]] if one else spec["columns"]
    if not isinstance(inputs, list) or not inputs:
        check.fail((*where, "columns"), f"must be a list of columns, got {show(inputs)}")
    key = (*where, "column" if one else "columns")
    if op == "calendar" and one:
        _input(check, key, inputs[0], known, {"timestamp"}, "calendar parts need a timestamp")
    elif op == "calendar":
        if len(inputs) != 3:
            check.fail(key, "calendar parts need one timestamp column or [year, month, day]")
        for c in inputs:
            _input(check, key, c, known, NUMBER_TYPES, "[year, month, day] must be whole numbers")
    elif op in ("clock", "bucket"):
        _input(check, key, inputs[0], known, NUMBER_TYPES, f"{op} needs a number")
    elif op in ("difference", "ratio"):
        if len(inputs) != 2:
            check.fail(key, f"{op} needs two number columns [a, b]")
        for c in inputs:
            _input(check, key, c, known, NUMBER_TYPES, f"{op} needs numbers")
    elif op == "concat":
        if len(inputs) < 2:
            check.fail(key, "concat needs at least two columns")
        for c in inputs:
            _input(check, key, c, known, TEXT_TYPES, "concat joins text, whole numbers, bools")
    else:  # hook: any known columns
        for c in inputs:
            _input(check, key, c, known, set(known.values()) - {None}, "")
    return inputs


def _part(
    check: Checker, where: tuple, spec: dict, op: str, encode: Any, inputs: list, known: dict
) -> None:
    part = spec.get("part")
    parts = TIME_OF_DAY_PARTS if op == "clock" else tuple(CALENDAR_PARTS)
    if op == "calendar" and len(inputs) == 3:
        parts = tuple(p for p in parts if p not in TIME_OF_DAY_PARTS)
    if part not in parts:
        check.fail((*where, "part"), f"must be one of {list(parts)}, got {show(part)}")
    if encode == "cycle" and not CALENDAR_PARTS[part]:
        check.fail((*where, "as"), f"{part} has no cycle")
    tz = spec.get("timezone")
    if tz is not None and (op != "calendar" or len(inputs) != 1 or not isinstance(tz, str)):
        check.fail((*where, "timezone"), "a time zone name, for a timestamp column only")


def _bounds(check: Checker, where: tuple, spec: dict) -> None:
    bounds = spec.get("bounds")
    if (
        not isinstance(bounds, list)
        or not bounds
        or not all(is_number(b) for b in bounds)
        or any(a >= b for a, b in pairwise(bounds))
    ):
        check.fail((*where, "bounds"), f"must be increasing numbers, got {show(bounds)}")
    labels = spec.get("labels")
    if labels is not None and (
        not isinstance(labels, list)
        or len(labels) != len(bounds) + 1
        or not all(isinstance(x, str) for x in labels)
    ):
        check.fail((*where, "labels"), f"must be {len(bounds) + 1} strings (one per bucket)")


def _hook(check: Checker, where: tuple, spec: dict) -> str:
    if not isinstance(spec.get("hook"), str):
        check.fail((*where, "hook"), "must name a registered feature hook")
    kind = spec.get("kind", "numeric")
    if kind not in ("numeric", "categorical"):
        check.fail((*where, "kind"), f"must be numeric or categorical, got {show(kind)}")
    return kind
