"""Derived features declared in the contract (`features.derived`), the model's input columns,
and the target.

A derived feature is one entry of a small vocabulary, computed from the columns of a joined
raw row (the contract's own, joined, lag and earlier derived columns)::

    features:
      derived:
        dep_hour:    {op: clock, column: sched_dep_time, part: hour}          # HHMM -> 0..23
        dep_time:    {op: clock, column: sched_dep_time, part: minute_of_day, as: cycle}
        weekday:     {op: calendar, columns: [year, month, day], part: weekday, as: category}
        hour_local:  {op: calendar, column: time_hour, part: hour, timezone: America/New_York}
        route:       {op: concat, columns: [origin, dest], sep: "-"}
        plane_age:   {op: difference, columns: [year, plane_year]}
        per_seat:    {op: ratio, columns: [distance, plane_seats]}
        delay_band:  {op: bucket, column: dep_delay_lag1, bounds: [0, 15, 60]}
        wind_chill:  {op: hook, hook: wind_chill, columns: [temp, wind_speed], kind: numeric}

`as` (the encoding): `number` (a float), `category` (the integer as text, a categorical
feature) or `cycle` (two numeric features `<name>_sin` and `<name>_cos` of the angle
2*pi*value/period). A `hook` names a function registered with `@feature_hook(name)` (in a
module named in `MLPIPE_FEATURE_HOOKS`) or under the entry-point group `mlpipe.features`; it is
resolved once when the transform is made, and the transform records its `module:function`, so
scoring imports exactly that code (the module must be importable where the model is loaded).

numpy/pandas only: this ships inside the registered model with the transform, so scoring
computes exactly the features training did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from ml.errors import ConfigurationError, ContractError
from ml.features import target as _target
from ml.features.target import TARGET  # noqa: F401  (re-exported: the target column)

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)

# The vocabulary. `ml.contract_training` checks contracts against the same table (a unit test
# keeps the two equal: that module cannot import this one).
OPS = ("calendar", "clock", "concat", "difference", "ratio", "bucket", "hook")
ENCODINGS = ("number", "category", "cycle")
# part -> period of its cycle (None: no cycle). Calendar parts of a timestamp column, or of
# [year, month, day] integer columns (no time of day there).
CALENDAR_PARTS: dict[str, float | None] = {
    "year": None,
    "month": 12,
    "day": 31,
    "weekday": 7,  # Monday is 0
    "day_of_year": 365.25,
    "hour": 24,
    "minute": 60,
    "minute_of_day": 1440,
}
TIME_OF_DAY_PARTS = ("hour", "minute", "minute_of_day")
CLOCK_PARTS = {p: CALENDAR_PARTS[p] for p in TIME_OF_DAY_PARTS}  # of an HHMM integer
DEFAULT_ENCODING = {
    "calendar": "number",
    "clock": "number",
    "concat": "category",
    "difference": "number",
    "ratio": "number",
    "bucket": "category",
}
HOOK_GROUP = "mlpipe.features"  # the entry-point group of feature hooks


@dataclass(frozen=True)
class Derived:
    """One derived feature of the contract (`features.derived.<name>`), as it ships in the
    transform (`to_dict`/`from_dict`)."""

    name: str
    op: str
    columns: tuple[str, ...]
    part: str | None = None
    encode: str = "number"
    sep: str = "-"
    bounds: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    timezone: str | None = None
    hook: str | None = None  # the hook's registered name
    target: str | None = None  # the hook's `module:function`, resolved when the transform is made
    kind: str = "numeric"  # a hook's output: numeric | categorical

    @classmethod
    def from_spec(cls, name: str, spec: dict) -> Derived:
        """A contract entry (checked by `ml.contract_training`) -> the feature."""
        op = spec["op"]
        columns = spec["columns"] if "columns" in spec else [spec["column"]]
        encode = spec.get("as", DEFAULT_ENCODING.get(op, "number"))
        kind = spec.get("kind", "numeric") if op == "hook" else "numeric"
        return cls(
            name=name,
            op=op,
            columns=tuple(columns),
            part=spec.get("part"),
            encode=encode,
            sep=str(spec.get("sep", "-")),
            bounds=tuple(float(b) for b in spec.get("bounds", ())),
            labels=tuple(str(x) for x in spec.get("labels", ())),
            timezone=spec.get("timezone"),
            hook=spec.get("hook"),
            kind=kind,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Derived:
        return cls(**{**d, **{k: tuple(d.get(k, ())) for k in ("columns", "bounds", "labels")}})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def outputs(self) -> dict[str, str]:
        """The feature's output columns and their kind (numeric | categorical)."""
        if self.op == "hook":
            return {self.name: self.kind}
        if self.encode == "cycle":
            return {f"{self.name}_sin": "numeric", f"{self.name}_cos": "numeric"}
        return {self.name: "categorical" if self.encode == "category" else "numeric"}

    def compute(self, column: Callable[[str], Any], index) -> dict[str, Any]:
        """The output columns, from `column(name)` (the input columns by name)."""
        if self.op == "concat":
            out = column(self.columns[0]).astype("string")
            for c in self.columns[1:]:
                out = out + self.sep + column(c).astype("string")
            return {self.name: out}
        if self.op == "hook":
            return {self.name: _run_hook(self, column, index)}
        if self.op == "bucket" and self.encode == "category":
            return {self.name: _bucket_labels(self, as_float(column(self.columns[0])), index)}
        return self._encode(self._values(column), index)

    def _values(self, column: Callable[[str], Any]):
        """The numeric values before encoding (float64, NaN where missing)."""
        import numpy as np

        if self.op == "calendar":
            return _calendar_part(self, [column(c) for c in self.columns])
        if self.op == "clock":
            hhmm = as_float(column(self.columns[0]))
            hour, minute = hhmm // 100, hhmm % 100
            return {"hour": hour, "minute": minute, "minute_of_day": hour * 60 + minute}[self.part]
        a, b = (as_float(column(c)) for c in self.columns)
        if self.op == "difference":
            return a - b
        if self.op == "ratio":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(b == 0, np.nan, a / np.where(b == 0, 1.0, b))
        if self.op == "bucket":  # as a number: the bucket's index
            values = as_float(column(self.columns[0]))
            return np.where(np.isnan(values), np.nan, np.searchsorted(self.bounds, values, "right"))
        raise ContractError(f"derived feature {self.name!r}: unknown op {self.op!r}")

    def _encode(self, values, index) -> dict[str, Any]:
        import numpy as np

        if self.encode == "number":
            return {self.name: values}
        if self.encode == "category":
            return {self.name: _ints_as_text(values, index)}
        angle = 2 * np.pi * values / _period(self)
        return {f"{self.name}_sin": np.sin(angle), f"{self.name}_cos": np.cos(angle)}

    @property
    def reads(self) -> tuple[str, ...]:
        return self.columns


def _period(feature: Derived) -> float:
    period = CALENDAR_PARTS.get(feature.part or "")
    if not period:
        raise ContractError(f"derived feature {feature.name!r}: part {feature.part!r} has no cycle")
    return float(period)


def as_float(values) -> Any:
    """An input column as a float64 numpy array (NaN for missing and non-numbers)."""
    import numpy as np
    import pandas as pd

    if isinstance(values, np.ndarray):
        return values.astype("float64")
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        values = pd.to_numeric(values, errors="coerce")
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _calendar_part(feature: Derived, columns: list):
    """A calendar part (float64, NaN where missing) of a timestamp column or of [year, month,
    day] integer columns (vectorized: pandas' `to_datetime` of a dict is ~10x slower)."""
    import numpy as np

    part = feature.part
    if len(columns) == 1:
        return _timestamp_part(columns[0], part, feature.timezone)
    y, m, d = (as_float(c) for c in columns)
    ok = ~(np.isnan(y) | np.isnan(m) | np.isnan(d))
    if part in ("year", "month", "day"):
        return np.where(ok, {"year": y, "month": m, "day": d}[part], np.nan)
    months = np.where(ok, (y - 1970) * 12 + (m - 1), 0).astype("int64").astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(ok, d - 1, 0).astype("timedelta64[D]")
    if part == "weekday":
        values = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    elif part == "day_of_year":
        values = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype("int64") + 1
    else:
        raise ContractError(f"derived feature {feature.name!r}: [year, month, day] have no {part}")
    return np.where(ok, values, np.nan)


def _timestamp_part(values, part: str, timezone: str | None):
    import numpy as np
    import pandas as pd

    ts = values if isinstance(values, pd.Series) else pd.Series(values)
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(
        ts.dtype
    ):
        ts = pd.to_datetime(ts, errors="coerce", utc=True)
    if timezone:
        ts = (ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts).dt.tz_convert(timezone)
    dt = ts.dt
    got = {
        "year": lambda: dt.year,
        "month": lambda: dt.month,
        "day": lambda: dt.day,
        "weekday": lambda: dt.weekday,
        "day_of_year": lambda: dt.dayofyear,
        "hour": lambda: dt.hour,
        "minute": lambda: dt.minute,
        "minute_of_day": lambda: dt.hour * 60 + dt.minute,
    }[part]()
    return got.to_numpy(dtype="float64", na_value=np.nan)


@lru_cache(maxsize=1)
def _digits():
    import numpy as np

    return np.array([str(i) for i in range(1441)], dtype=object)


def _ints_as_text(values, index):
    """Whole numbers as their decimal text ("3"), missing where NaN (0..1440 by table lookup)."""
    import numpy as np
    import pandas as pd

    ok = ~np.isnan(values)
    small = ok & (values >= 0) & (values <= 1440)
    codes = np.where(small, values, 0).astype("int64")
    text = np.where(small, _digits()[codes], None)
    if (ok & ~small).any():
        other = ok & ~small
        text[other] = [str(int(v)) for v in values[other]]
    return pd.Series(text, index=index, dtype="string")


def _bucket_labels(feature: Derived, values, index):
    """The bucket of each value as a label: `labels[i]`, or `[lo, hi)` from the bounds."""
    import numpy as np
    import pandas as pd

    labels = feature.labels or _default_labels(feature.bounds)
    ok = ~np.isnan(values)
    position = np.searchsorted(np.asarray(feature.bounds), np.where(ok, values, 0), "right")
    table = np.array(labels, dtype=object)
    return pd.Series(np.where(ok, table[position], None), index=index, dtype="string")


def _default_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    def show(b: float) -> str:
        return str(int(b)) if float(b).is_integer() else str(b)

    edges = ["-inf", *(show(b) for b in bounds), "inf"]
    return tuple(f"[{lo}, {hi})" for lo, hi in pairwise(edges))


# --- hooks ----------------------------------------------------------------------------------

_HOOKS: dict[str, str] = {}  # name -> module:function of the hooks registered in this process


def feature_hook(name: str):
    """Register a feature function under `name`: `@feature_hook("wind_chill")` on
    `def wind_chill(rows: pd.DataFrame) -> array-like` (one value per row of `rows`, which
    holds only the columns the contract's entry lists)."""

    def register(fn):
        target = f"{fn.__module__}:{fn.__qualname__}"
        known = _HOOKS.get(name)
        if known not in (None, target):
            raise ConfigurationError(
                f"feature hook {name!r} is registered twice: {known}, {target}"
            )
        _HOOKS[name] = target
        return fn

    return register


def hook_target(name: str, modules: Iterable[str] = ()) -> str:
    """The `module:function` of the hook registered as `name`: by `@feature_hook` in one of
    `modules` (imported here), or under the entry-point group `mlpipe.features`."""
    import importlib
    from importlib.metadata import entry_points

    for module in modules:
        importlib.import_module(module)
    if name in _HOOKS:
        return _HOOKS[name]
    for ep in entry_points(group=HOOK_GROUP):
        if ep.name == name:
            return ep.value.replace(" ", "")
    raise ConfigurationError(
        f"feature hook {name!r} is not registered: register it with "
        f"@ml.features.derived.feature_hook({name!r}) in a module named in MLPIPE_FEATURE_HOOKS "
        f"(searched {list(modules)}), or as an entry point of group {HOOK_GROUP!r}"
    )


@lru_cache(maxsize=64)
def load_hook(target: str) -> Callable:
    """The function at `module:function` (where the transform was made, or where it scores)."""
    import importlib

    module, _, qualname = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"feature hook {target}: module {module!r} cannot be imported here ({exc}); install "
            "it where the model is trained and scored"
        ) from exc
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _run_hook(feature: Derived, column: Callable[[str], Any], index):
    import numpy as np
    import pandas as pd

    if not feature.target:
        raise ConfigurationError(f"derived feature {feature.name!r}: hook not resolved")
    rows = pd.DataFrame({c: column(c) for c in feature.columns}, index=index)
    out = load_hook(feature.target)(rows)
    if len(out) != len(rows):
        raise ConfigurationError(
            f"feature hook {feature.hook!r} ({feature.target}) returned {len(out)} values "
            f"for {len(rows)} rows"
        )
    if feature.kind == "categorical":
        return pd.Series(np.asarray(out, dtype=object), index=index).astype("string")
    return as_float(pd.Series(np.asarray(out), index=index))


# --- the contract's features ----------------------------------------------------------------


def derived_of(contract: Contract, hook_modules: Iterable[str] = ()) -> list[Derived]:
    """The contract's derived features in declared order, hooks resolved."""
    out = []
    for name, spec in (contract.features.get("derived") or {}).items():
        feature = Derived.from_spec(name, spec)
        if feature.op == "hook":
            feature = Derived.from_dict(
                {**feature.to_dict(), "target": hook_target(feature.hook or "", hook_modules)}
            )
        out.append(feature)
    return out


def lag_kinds(contract: Contract) -> dict[str, str]:
    """Each lag feature (`features.lags`) and its kind: numeric, or categorical for text."""
    types = {c.name: c.type for c in contract.columns}
    out = {}
    for name, spec in (contract.features.get("lags") or {}).items():
        numeric = spec.get("agg") == "count" or types.get(spec["column"]) in ("int", "float")
        out[name] = "numeric" if numeric else "categorical"
    return out


def feature_columns(contract: Contract) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns of the model, derived ones included."""
    spec = contract.features
    numeric = list(spec.get("numeric", []))
    categorical = list(spec.get("categorical", []))
    for name, spec_ in (spec.get("derived") or {}).items():
        for output, kind in Derived.from_spec(name, spec_).outputs.items():
            into = numeric if kind == "numeric" else categorical
            if output not in numeric + categorical:
                into.append(output)
    return numeric, categorical


def timestamp_inputs(contract: Contract) -> list[str]:
    """The timestamp columns the model reads (calendar parts of one column)."""
    out = []
    for spec in (contract.features.get("derived") or {}).values():
        if spec.get("op") == "calendar" and "column" in spec and spec["column"] not in out:
            out.append(spec["column"])
    return out


def derived_inputs(features: list[Derived]) -> list[str]:
    """The columns the derived features read that none of them makes."""
    made: set[str] = set()
    out: list[str] = []
    for f in features:
        out += [c for c in f.reads if c not in made and c not in out]
        made |= set(f.outputs)
    return out


def derived_columns(df: pd.DataFrame, features: list[Derived]) -> dict[str, Any]:
    """The derived features' columns of `df`, by name (without copying `df`); a feature may
    read the outputs of the ones declared before it."""
    made: dict[str, Any] = {}

    def column(name: str):
        if name in made:
            import pandas as pd

            value = made[name]
            return value if isinstance(value, pd.Series) else pd.Series(value, index=df.index)
        return df[name]

    for feature in features:
        made.update(feature.compute(column, df.index))
    return made


def add_derived(df: pd.DataFrame, features: list[Derived]) -> pd.DataFrame:
    return df.assign(**derived_columns(df, features))


def row_keys(contract: Contract) -> list[str]:
    """The columns that identify a row (kept beside features and predictions)."""
    keys = list(contract.features.get("row_keys", []))
    unknown = [k for k in keys if k not in contract.column_names]
    if unknown:
        raise ContractError(
            f"{contract.path}: features.row_keys: {unknown} are not columns of the contract"
        )
    return keys


def add_target(df: pd.DataFrame, target: dict) -> pd.DataFrame:
    """The encoded target (`ml.features.target`); rows whose source value is missing get NA.

    For flights the missing source value is a cancelled flight (no `dep_delay`): see
    `target.missing` in the contract; `build_features` drops those rows from every split.
    """
    return _target.add_target(df, target)


def with_target(df: pd.DataFrame, target: dict) -> pd.DataFrame:
    """The rows that have a target value, with the target added (`target.missing: drop`).

    One row filter before anything else: the joins then work on the kept rows only.
    """
    return _target.with_target(df, target)
