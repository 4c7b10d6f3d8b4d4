"""Checks of a contract's training sections, kept as raw mappings: `features` (row keys, joins,
lookups, numeric, categorical, derived), `target`, `split` and `model`."""

from __future__ import annotations

from typing import Any

from ml.contract_yaml import Checker, is_number, show

TRAINING_KEYS = {"features", "target", "split", "model"}  # what preprocessing and training read
FEATURE_KEYS = {"row_keys", "joins", "lookups", "numeric", "categorical", "derived", "description"}
JOIN_KEYS = {"dataset", "keys", "columns"}
LOOKUP_KEYS = JOIN_KEYS | {"right_keys", "prefix"}
REFERENCE_KEYS = {"joins": JOIN_KEYS, "lookups": LOOKUP_KEYS}
TARGET_KEYS = {"name", "source_column", "threshold", "missing", "task", "description"}
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
