"""Checks of a contract's training sections, kept as raw mappings: `features` (row keys, joins,
lookups, lags, numeric, categorical, derived), `target`, `split` and `model`."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from ml.contract_yaml import Checker, KeyPath, is_number, show
from ml.retrain_policy import check_retrain

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
TARGET_KEYS = {
    "name", "source_column", "missing", "task", "kind", "description",
    "threshold", "positive", "classes", "bins", "other", "min_class_fraction", "transform",
}  # fmt: skip
# The keys that belong to one kind of target (`ml.features.target` says what each means).
KIND_KEYS = {
    "binary": {"threshold", "positive"},
    "multiclass": {"classes", "bins", "other", "min_class_fraction"},
    "regression": {"transform"},
}
TASK_ALIASES = {
    "binary_classification": "binary",
    "multiclass_classification": "multiclass",
    "regression": "regression",
}
# The promotion metrics that measure each kind (`ml.promotion_rule`).
KIND_METRICS = {
    "binary": ("roc_auc", "pr_auc", "accuracy", "log_loss", "brier", "ece"),
    "multiclass": ("macro_f1", "ovr_auc", "accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
NUMERIC_TYPES = {"int", "float"}
SPLIT_KEYS = {"by", "fractions", "description"}
MODEL_KEYS = {"name", "metric", "margin", "description", "approval", "retrain"}
# `model.approval`: `required` puts a person's approval (Airflow's human-in-the-loop) between
# the decision and the alias move; `none` (the default) moves on the decision alone.
APPROVALS = ("none", "required")


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
    if src is None:
        check.fail(("target",), "missing key 'source_column' (the column the target comes from)")
    if src not in columns:
        check.fail(("target", "source_column"), f"{src!r} is not a column of the contract")
    if pii.get(src) == "drop":
        check.fail(("target", "source_column"), f"{src!r} is dropped as PII")
    if target.get("missing", "drop") != "drop":
        check.fail(
            ("target", "missing"),
            f"must be 'drop' (rows without a target value are left out), got {target['missing']!r}",
        )
    kind = _target_kind(check, target)
    spec = raw["columns"][src]
    numeric = (spec if isinstance(spec, str) else spec.get("type")) in NUMERIC_TYPES
    for key in sorted(KIND_KEYS.keys() - {kind}):
        for extra in sorted(KIND_KEYS[key] & set(target) - KIND_KEYS[kind]):
            check.fail(("target", extra), f"does not apply to a {kind} target (only to {key})")
    {"binary": _binary, "multiclass": _multiclass, "regression": _regression}[kind](
        check, target, numeric, spec
    )
    metric = (raw.get("model") or {}).get("metric") if isinstance(raw.get("model"), dict) else None
    if metric is None and kind != "binary":
        check.fail(
            ("model",) if isinstance(raw.get("model"), dict) else ("target", "kind"),
            f"a {kind} target needs model.metric (the default, roc_auc, measures binary "
            f"targets): one of {list(KIND_METRICS[kind])}",
        )
    if metric is not None and metric not in KIND_METRICS[kind]:
        check.fail(
            ("model", "metric"),
            f"{metric!r} does not measure a {kind} target; use one of {list(KIND_METRICS[kind])}",
        )


def _target_kind(check: Checker, target: dict) -> str:
    kind, task = target.get("kind"), target.get("task")
    if kind is not None and kind not in KIND_KEYS:
        check.fail(("target", "kind"), f"must be one of {sorted(KIND_KEYS)}, got {kind!r}")
    if task is not None and task not in TASK_ALIASES:
        check.fail(("target", "task"), f"must be one of {sorted(TASK_ALIASES)}, got {task!r}")
    if kind is not None and task is not None and TASK_ALIASES[task] != kind:
        check.fail(("target", "task"), f"{task!r} contradicts kind {kind!r}")
    if kind is None and task is None and "threshold" not in target:
        check.fail(("target",), f"missing key 'kind' (one of {sorted(KIND_KEYS)})")
    return kind or TASK_ALIASES.get(task, "binary")


def _binary(check: Checker, target: dict, numeric: bool, spec: Any) -> None:
    if ("threshold" in target) == ("positive" in target):
        check.fail(("target",), "a binary target needs exactly one of 'threshold' or 'positive'")
    if "threshold" in target:
        if not is_number(target["threshold"]):
            check.fail(("target", "threshold"), f"must be a number, got {target['threshold']!r}")
        if not numeric:
            check.fail(("target", "threshold"), "needs a numeric source_column (int or float)")
    else:
        _values(check, ("target", "positive"), target["positive"], 1)


def _multiclass(check: Checker, target: dict, numeric: bool, spec: Any) -> None:
    if "classes" not in target:
        check.fail(("target",), "missing key 'classes' (the class names, in order)")
    classes = _values(check, ("target", "classes"), target["classes"], 2)
    if "bins" in target:
        bins = target["bins"]
        if not numeric:
            check.fail(("target", "bins"), "needs a numeric source_column (int or float)")
        if not isinstance(bins, list) or not bins or not all(is_number(b) for b in bins):
            check.fail(("target", "bins"), f"must be a list of numbers, got {show(bins)}")
        if any(a >= b for a, b in pairwise(bins)):
            check.fail(("target", "bins"), f"must increase strictly, got {bins}")
        if len(classes) != len(bins) + 1:
            check.fail(
                ("target", "classes"),
                f"{len(bins)} bin edge(s) make {len(bins) + 1} classes, got {len(classes)} names",
            )
        if "other" in target:
            check.fail(("target", "other"), "does not apply to bins (every value has a bin)")
    elif not isinstance(target.get("other", False), bool):
        check.fail(("target", "other"), f"must be true or false, got {target['other']!r}")
    elif target.get("other") and "other" in classes:
        check.fail(("target", "classes"), "lists 'other', which other: true adds itself")
    fraction = target.get("min_class_fraction")
    if fraction is not None and (not is_number(fraction) or not 0 < fraction < 0.5):
        check.fail(("target", "min_class_fraction"), f"must be in (0, 0.5), got {fraction!r}")


def _regression(check: Checker, target: dict, numeric: bool, spec: Any) -> None:
    if not numeric:
        check.fail(("target", "source_column"), "a regression target needs a numeric column")
    transform = target.get("transform")
    if transform is not None and transform != "log1p":
        check.fail(("target", "transform"), f"must be 'log1p' (or absent), got {transform!r}")
    low = spec.get("min") if isinstance(spec, dict) else None
    if transform == "log1p" and (low is None or low < 0):
        check.fail(
            ("target", "transform"),
            f"log1p needs the source column to declare min >= 0, got min {low!r}",
        )


def _values(check: Checker, where: KeyPath, value: Any, at_least: int) -> list[str]:
    """A list of distinct scalar values (class names, positive values), as text."""
    if not isinstance(value, list) or not all(isinstance(v, str | int | bool) for v in value):
        check.fail(where, f"must be a list of values, got {show(value)}")
    names = [str(v) for v in value]
    if len(names) < at_least or len(set(names)) != len(names):
        check.fail(where, f"must list at least {at_least} distinct value(s), got {value}")
    return names


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
    spec = check.mapping(("model",), spec, MODEL_KEYS)
    if spec.get("approval", "none") not in APPROVALS:
        check.fail(
            ("model", "approval"), f"must be one of {list(APPROVALS)}, got {spec['approval']!r}"
        )
    check_retrain(check, spec.get("retrain"))


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
