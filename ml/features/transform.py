"""The fitted feature transform: numeric imputation and scaling, categorical vocabularies.

One implementation, `FeatureTransform.apply`, turns joined raw rows into model inputs; it runs on
Dask partitions during preprocessing and on pandas frames inside the registered model at
scoring time, so training and scoring see the same features. numpy/pandas/pyarrow only: it ships
inside the model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ml.features.derived import (
    Derived,
    as_float,
    derived_columns,
    derived_inputs,
    derived_of,
    feature_columns,
)

if TYPE_CHECKING:
    import pandas as pd

    from ml.contracts import Contract

log = logging.getLogger(__name__)

# Bump when the feature code changes what it produces: it is part of every feature version.
FEATURE_CODE_VERSION = "4"  # 4: derived features declared in the contract, lags
OOV = 0  # categorical code of missing and out-of-vocabulary values
DEFAULT_MIN_FREQUENCY = 5  # a category value seen fewer times in train goes to the OOV bucket


@dataclass
class FeatureTransform:
    """Fitted on the train split only: numeric imputation and scaling, categorical vocabularies."""

    numeric: list[str]
    categorical: list[str]
    derived: list[dict]  # `Derived.to_dict()` of each derived feature, in declared order
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    min_frequency: int = DEFAULT_MIN_FREQUENCY
    code_version: str = FEATURE_CODE_VERSION

    @classmethod
    def for_contract(
        cls,
        contract: Contract,
        min_frequency: int = DEFAULT_MIN_FREQUENCY,
        hook_modules: tuple[str, ...] = (),
    ) -> FeatureTransform:
        """The unfitted transform of the contract's features (hooks resolved by name from
        `hook_modules` and the `mlpipe.features` entry points)."""
        numeric, categorical = feature_columns(contract)
        return cls(
            numeric=numeric,
            categorical=categorical,
            derived=[f.to_dict() for f in derived_of(contract, hook_modules)],
            min_frequency=min_frequency,
        )

    @property
    def derived_features(self) -> list[Derived]:
        cached = self.__dict__.get("_derived")
        if cached is None or cached[0] is not self.derived:
            if any(not isinstance(d, dict) for d in self.derived):
                raise ValueError(
                    "feature transform: derived features by name come from feature code "
                    f"version 3 or older (this is {FEATURE_CODE_VERSION}): rebuild the features"
                )
            cached = (self.derived, [Derived.from_dict(d) for d in self.derived])
            self.__dict__["_derived"] = cached
        return cached[1]

    @property
    def input_columns(self) -> list[str]:
        """The raw (joined) columns the transform reads: the model's input signature."""
        made = {c for f in self.derived_features for c in f.outputs}
        columns = [c for c in self.numeric + self.categorical if c not in made]
        columns += [c for c in derived_inputs(self.derived_features) if c not in columns]
        return columns

    @property
    def cardinalities(self) -> list[int]:
        """Embedding sizes: the vocabulary plus the OOV/missing bucket."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def fit(self, train: pd.DataFrame) -> FeatureTransform:
        """Fit on the train split (a pandas frame of joined raw rows)."""
        return self.fit_stats([self.partition_stats(train)])

    def fit_stats(self, parts: list[dict]) -> FeatureTransform:
        """Fit from the `partition_stats` of every partition of the train split.

        One pass: each partition gives its counts, means and squared deviations (numeric) and
        its value counts (categorical); they are combined exactly (Chan et al.'s pairwise
        update), so a fit over partitions equals the pandas fit up to float summation order.
        """
        total = _combine_stats(parts)
        self.means, self.stds = {}, {}
        for c in self.numeric:
            n, mean, m2 = total["numeric"][c]
            self.means[c] = _finite(mean if n else float("nan"), 0.0)
            self.stds[c] = _finite((m2 / (n - 1)) ** 0.5 if n > 1 else float("nan"), 1.0) or 1.0
        self.vocab = {
            c: sorted(
                str(v) for v, n in total["counts"].get(c, {}).items() if n >= self.min_frequency
            )
            for c in self.categorical
        }
        return self

    def partition_stats(self, df: pd.DataFrame) -> dict:
        """One partition's statistics for `fit_stats`: (count, mean, sum of squared deviations) of
        each numeric column and the value counts of each categorical one (missing left out)."""
        import numpy as np

        derived = derived_columns(df, self.derived_features)
        numeric = {}
        for c in self.numeric:
            values = as_float(derived[c] if c in derived else df[c])
            values = values[~np.isnan(values)]
            mean = float(values.mean()) if len(values) else 0.0
            numeric[c] = (len(values), mean, float(((values - mean) ** 2).sum()))
        counts = {}
        for c in self.categorical:
            values = derived[c] if c in derived else df[c]
            counts[c] = values.astype("string").value_counts().to_dict()
        return {"numeric": numeric, "counts": counts}

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """Joined raw rows -> model inputs: `num__*` float32 and `cat__*` int64 columns."""
        import pandas as pd

        missing = [c for c in self.input_columns if c not in df.columns]
        if missing:
            raise KeyError(
                f"feature transform: the rows lack input column(s) {missing}; it reads "
                f"{self.input_columns} (joined raw rows: see features.join_references)"
            )
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        derived = derived_columns(df, self.derived_features)

        def column(c: str):
            return derived[c] if c in derived else df[c]

        out = {}
        for c in self.numeric:
            values = as_float(column(c))
            filled = np.where(np.isnan(values), self.means[c], values)
            out[f"num__{c}"] = ((filled - self.means[c]) / self.stds[c]).astype("float32")
        vocab = self._vocab_arrays()
        for c in self.categorical:
            # Missing and unseen values both get no index (-1), i.e. OOV code 0 after the shift.
            values = column(c)
            text = values if isinstance(values, pd.Series) else pd.Series(values, index=df.index)
            found = pc.index_in(pa.array(text.astype("string"), type=pa.string()), vocab[c])
            out[f"cat__{c}"] = (
                found.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64") + 1
            )
        return pd.DataFrame(out, index=df.index)

    def _vocab_arrays(self) -> dict[str, Any]:
        """The vocabularies as pyarrow arrays (for `pc.index_in`), built once per transform."""
        import pyarrow as pa

        cached = self.__dict__.get("_vocab_pa")
        if cached is None or cached[0] is not self.vocab:
            arrays = {c: pa.array(self.vocab[c], type=pa.string()) for c in self.categorical}
            cached = (self.vocab, arrays)
            self.__dict__["_vocab_pa"] = cached
        return cached[1]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureTransform:
        return cls(**json.loads(text))


def _combine_stats(parts: list[dict]) -> dict:
    """The fit statistics of the union of partitions (numeric: Chan et al.'s parallel update)."""
    numeric: dict[str, tuple[int, float, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        for c, (nb, mb, m2b) in part["numeric"].items():
            if not nb:
                continue
            na, ma, m2a = numeric.get(c, (0, 0.0, 0.0))
            n = na + nb
            delta = mb - ma
            numeric[c] = (n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n)
        for c, vc in part["counts"].items():
            into = counts.setdefault(c, {})
            for value, n in vc.items():
                into[value] = into.get(value, 0) + int(n)
    for c in parts[0]["numeric"] if parts else ():
        numeric.setdefault(c, (0, 0.0, 0.0))
    return {"numeric": numeric, "counts": counts}


def _finite(value: Any, default: float) -> float:
    import math

    value = float(value)
    return value if math.isfinite(value) else default


def model_frame(df: pd.DataFrame, transform: FeatureTransform, keep: list[str]) -> pd.DataFrame:
    """Model inputs plus the columns in `keep` (target, keys): the layout of feature parquet."""
    import pandas as pd

    return pd.concat(
        [df[keep].reset_index(drop=True), transform.apply(df).reset_index(drop=True)], axis=1
    )
