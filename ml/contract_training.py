"""Checks of a contract's training sections, kept as raw mappings: `features` (row keys, joins,
lookups, numeric, categorical, derived), `target`, `split` and `model`."""

from __future__ import annotations

import itertools
from typing import Any

from ml.contract_yaml import Checker, KeyPath, is_number, show

TRAINING_KEYS = {"features", "target", "split", "model"}  # what preprocessing and training read
FEATURE_KEYS = {"row_keys", "joins", "lookups", "numeric", "categorical", "derived", "description"}
JOIN_KEYS = {"dataset", "keys", "columns"}
LOOKUP_KEYS = JOIN_KEYS | {"right_keys", "prefix"}
REFERENCE_KEYS = {"joins": JOIN_KEYS, "lookups": LOOKUP_KEYS}
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
MODEL_KEYS = {"name", "metric", "margin", "description"}


def check_training_sections(
    check: Checker, raw: dict[str, Any], columns: set[str], pii: dict[str, str]
) -> None:
    """Check the training sections of a contract document whose columns and PII are checked."""
    _features(check, raw.get("features"), columns, pii)
    _target(check, raw, columns, pii)
    _split(check, raw)
    _model(check, raw)


def _features(check: Checker, spec: Any, columns: set[str], pii: dict[str, str]) -> None:
    if spec is None:
        return
    check.mapping(("features",), spec, FEATURE_KEYS)
    usable = {c for c in columns if pii.get(c) != "drop"}
    what = "columns of the contract (PII columns that are dropped do not count)"
    if "row_keys" in spec:
        check.names(("features", "row_keys"), spec["row_keys"], usable, what)
    joined = _references(check, spec, "joins", usable, what)
    joined |= _references(check, spec, "lookups", usable, what)
    derived = set(check.names(("features", "derived"), spec.get("derived", []), None, ""))
    for kind in ("numeric", "categorical"):
        if kind in spec:
            check.names(
                ("features", kind),
                spec[kind],
                usable | joined | derived,
                "columns of the contract, joined columns or derived features",
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
        if any(a >= b for a, b in itertools.pairwise(bins)):
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
    check.mapping(("model",), spec, MODEL_KEYS)
