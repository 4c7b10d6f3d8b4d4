"""The target of a contract: its kind (binary, multiclass, regression) and its encoding.

The `target` section of a contract, checked by `ml.contract_training`, says what is predicted:

- `kind: binary`: `source_column` above a numeric `threshold` (`dep_delay > 15`), or a value
  among `positive` values of a column (`weather: [rain, storm]`). Encoded 1.0 / 0.0.
- `kind: multiclass`: `classes` named in order, either the bins of a numeric column (`bins:
  [15, 60]` cut at each edge, right edge included: `<= 15`, `(15, 60]`, `> 60`, one class per
  bin) or values of a column (with `other: true` every value not listed is the class `other`;
  without it, a value not listed is refused). Encoded as the class index (0.0, 1.0, ...).
  `min_class_fraction` refuses training when a class has a smaller share of the train split.
- `kind: regression`: the value of a numeric column, as it is (the model may learn it through
  `transform: log1p`, and gives its predictions back on the column's own scale).

`task: binary_classification | multiclass_classification | regression` is accepted for `kind`.
Rows whose source value is missing get no target (`missing: drop`: they are left out).

numpy/pandas only: this ships inside the registered model (the model's outputs name the
classes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml.errors import BadInputError, RefusedError

if TYPE_CHECKING:
    import pandas as pd

TARGET = "target"  # the encoded target's column in feature sets and eval snapshots
BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
KINDS = (BINARY, MULTICLASS, REGRESSION)
TASK_ALIASES = {
    "binary_classification": BINARY,
    "multiclass_classification": MULTICLASS,
    "regression": REGRESSION,
}
OTHER = "other"  # the class of every value not listed, with `other: true`
TRANSFORMS = ("log1p",)


class TargetValueError(BadInputError):
    """A source value the contract's target cannot encode (names the column and the values)."""


class RareClassError(RefusedError):
    """A class under the contract's `min_class_fraction` in the train split."""


def target_kind(target: dict[str, Any]) -> str:
    """The kind of a (checked) `target` section: `kind`, else its `task` alias, else binary."""
    if target.get("kind"):
        return target["kind"]
    if target.get("task"):
        return TASK_ALIASES[target["task"]]
    return BINARY


def target_spec(target: dict[str, Any]) -> dict[str, Any]:
    """The parts of a `target` section that encode it and name the model's outputs (JSON)."""
    kind = target_kind(target)
    spec: dict[str, Any] = {"kind": kind, "source_column": target["source_column"]}
    if kind == BINARY:
        if "positive" in target:
            spec["positive"] = [str(v) for v in target["positive"]]
        else:
            spec["threshold"] = float(target["threshold"])
    elif kind == MULTICLASS:
        spec["classes"] = class_names(target)
        if "bins" in target:
            spec["bins"] = [float(b) for b in target["bins"]]
        spec["other"] = bool(target.get("other", False))
        if target.get("min_class_fraction") is not None:
            spec["min_class_fraction"] = float(target["min_class_fraction"])
    else:
        spec["transform"] = target.get("transform")
    return spec


def class_names(target: dict[str, Any]) -> list[str]:
    """The classes of a multiclass target in index order (`other` last when it is on)."""
    names = [str(c) for c in target.get("classes", [])]
    if target.get("other") and "bins" not in target:
        names.append(OTHER)
    return names


def encode(df: pd.DataFrame, target: dict[str, Any]):
    """The encoded target of `df`'s rows as float32 (NaN where the source value is missing)."""
    import numpy as np
    import pandas as pd

    spec = target_spec(target)
    column = spec["source_column"]
    source = df[column]
    missing = source.isna().to_numpy()
    if spec["kind"] == REGRESSION:
        values = pd.to_numeric(source, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    elif spec["kind"] == BINARY and "threshold" in spec:
        numbers = pd.to_numeric(source, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        values = (numbers > spec["threshold"]).astype("float64")
    elif spec["kind"] == BINARY:
        values = source.astype("string").isin(spec["positive"]).to_numpy().astype("float64")
    elif "bins" in spec:
        numbers = pd.to_numeric(source, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        values = np.searchsorted(np.asarray(spec["bins"]), numbers, side="left").astype("float64")
    else:
        values = _class_codes(source, spec, missing)
    return pd.Series(
        np.where(missing, np.nan, values).astype("float32"), index=df.index, name=TARGET
    )


def _class_codes(source, spec: dict[str, Any], missing):
    """Class indices of a categorical source; unlisted values go to `other` or are refused."""
    import numpy as np
    import pandas as pd

    classes = spec["classes"]
    listed = [c for c in classes if not (spec["other"] and c == OTHER)]
    codes = pd.Index(listed).get_indexer(source.astype("string").fillna("").to_numpy(dtype=object))
    unlisted = (codes < 0) & ~missing
    if unlisted.any():
        if not spec["other"]:
            seen = sorted(set(source[unlisted].astype("string").head(1000)))[:5]
            raise TargetValueError(
                f"target {spec['source_column']!r}: value(s) {seen} are not among the classes "
                f"{listed}; list them in target.classes, or set target.other: true to count "
                f"every value not listed as {OTHER!r}"
            )
        codes = np.where(unlisted, len(listed), codes)
    return codes.astype("float64")


def add_target(df: pd.DataFrame, target: dict[str, Any]) -> pd.DataFrame:
    """`df` with the encoded target column (NaN where the source value is missing)."""
    # `assign` copies no column (copy-on-write): a full `copy()` here was a whole-frame copy.
    return df.assign(**{TARGET: encode(df, target)})


def with_target(df: pd.DataFrame, target: dict[str, Any]) -> pd.DataFrame:
    """The rows that have a target value, with the target added (`target.missing: drop`)."""
    return add_target(df[df[target["source_column"]].notna()], target)


def check_class_fractions(y, spec: dict[str, Any], where: str = "the train split") -> None:
    """Refuse a multiclass target whose rarest class is under `min_class_fraction` of `where`."""
    import numpy as np

    bound = spec.get("min_class_fraction")
    if spec["kind"] != MULTICLASS or bound is None:
        return
    y = np.asarray(y, dtype="int64")
    shares = np.bincount(y, minlength=len(spec["classes"])) / max(len(y), 1)
    rare = {
        c: round(float(s), 5) for c, s in zip(spec["classes"], shares, strict=True) if s < bound
    }
    if rare:
        raise RareClassError(
            f"target {spec['source_column']!r}: class(es) {rare} hold less than "
            f"min_class_fraction={bound} of {where}; list fewer classes (with target.other: "
            f"true the others count as {OTHER!r}), widen the bins, or lower min_class_fraction"
        )
