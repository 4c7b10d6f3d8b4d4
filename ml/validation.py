"""Contract validation: a batch passes its data contract or goes to quarantine with a report.

The Great Expectations (1.x) suite is generated from the contract (`build_suite`): every contract
rule becomes exactly one expectation, and every expectation carries its rule id in `meta`
(`flights.dep_delay.max`, `flights.table.row_count`), so reports and errors name contract rules.

Rule ids and the expectation each becomes:

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

Value rules ignore missing values (only `not_null` looks at them). `unique` (a column or a key)
counts every row whose value occurs more than once (both copies of a duplicate); rows with a
missing key value are left out of key uniqueness. Freshness: the newest value of the column must
be no older than the end of the batch's partition (`date=2013-01-01` -> 2013-01-02 00:00, UTC for
tz-aware columns) minus `max_lag_hours`; it never looks at the clock, so re-validation agrees.

Two engines, one result shape (a list of rule dicts: rule, column, expectation, success,
unexpected_count, unexpected_percent, unexpected_sample, observed_value, error):

- `validate_frame(df, contract)`: one pandas frame, the whole suite in GX;
- `validate_dask(ddf, contract)`: GX on each partition (`validate_partition`, a Dask task in the
  workers, GX context cached per worker process), counts summed, percentages recomputed, samples
  merged and capped; row count, uniqueness and freshness computed with Dask over the whole batch
  (uniqueness by 64-bit row hashes in a partitioned value count: no process holds the batch).

`validate_batch(ref)` validates a raw batch (on the Dask cluster when it is large) and applies the
contract's PII rules and failure policy (`quarantine_batch`, or `quarantine_rows`: bad rows with
`_failed_rules` to `quarantine`, good rows to `validated`; over `max_bad_fraction`, or when a rule
that is not a row rule (`ROW_KINDS`) fails, the whole batch). Rows in `validated` + rows in
`quarantine` == rows in `raw`. Quarantine keeps rows as they came (PII included: a restricted
zone, so a person can inspect and release them; see `ml.quarantine`).

`import great_expectations` is slow (3-4 s, ~280 MB), so it happens on first use, and the
ephemeral context, data source, asset and batch definition are made once per process (the
suites and validation definitions once per contract hash). Validation runs under a process-wide
lock: GX contexts are not documented as thread-safe.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ml.contracts import Contract, load_contract
from ml.errors import ConfigurationError, ContractViolationError
from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

    from ml.storage import Manifest

log = logging.getLogger(__name__)

SAMPLE_SIZE = 10  # unexpected values kept per rule in a report
REPORT_PREFIX = "validation"  # reports zone: validation/<dataset>/<partition>/<batch_id>.json|.html
FAILED_RULES = "_failed_rules"  # column of quarantined rows: the rule ids each row broke
DASK_MIN_ROWS = 1_000_000  # batches with more rows are validated on the Dask cluster

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


class ContractViolation(ContractViolationError):
    """A batch broke its data contract; it was quarantined.

    The message names the batch, every failed rule id with its unexpected count (or observed
    value) and the report URL. `.report`, `.report_url`, `.outcome` carry the details.
    """

    def __init__(
        self,
        message: str,
        *,
        ref: str = "",
        report: ValidationReport | None = None,
        report_url: str = "",
        outcome: ValidationOutcome | None = None,
    ) -> None:
        super().__init__(message)
        self.ref = ref
        self.report = report
        self.report_url = report_url
        self.outcome = outcome

    @property
    def failed_rules(self) -> list[str]:
        return self.report.failed_rules if self.report else []

    def __reduce__(self):  # keep the details when pickled (Dask, Airflow)
        return (self.__class__, (str(self),), self.__dict__)


@dataclass(frozen=True)
class RuleSpec:
    """One contract rule, before it becomes an expectation."""

    rule: str  # stable id, e.g. `flights.dep_delay.max`
    kind: str  # exists, type, not_null, min, max, allowed, regex, unique, row_count
    column: str | None  # None for table rules
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationReport:
    """The outcome of validating one frame against one contract, rule by rule."""

    dataset: str
    contract_hash: str
    success: bool
    rows: int
    rules: list[dict[str, Any]]
    batch_ref: str = ""
    validated_at: str = ""
    duration_s: float = 0.0
    gx_version: str = ""

    @property
    def failed_rules(self) -> list[str]:
        return [r["rule"] for r in self.rules if not r["success"]]

    def rule(self, rule_id: str) -> dict[str, Any]:
        """The result of one rule by id (KeyError if the contract has no such rule)."""
        for r in self.rules:
            if r["rule"] == rule_id:
                return r
        raise KeyError(rule_id)

    def failure_summary(self) -> str:
        """`rule (N unexpected), rule (observed X), ...` for every failed rule."""
        return ", ".join(_describe_failure(r) for r in self.rules if not r["success"])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed_rules": self.failed_rules}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_html(self) -> str:
        """A small self-contained HTML page: one table row per rule."""
        return _render_html(self)


@dataclass
class ValidationOutcome:
    """What `validate_batch` did: the report, where it lies and the batch's new manifest."""

    report: ValidationReport
    report_url: str
    manifest: Manifest  # in `validated` when passed (rows mode: the good rows), else `quarantine`
    passed: bool
    report_html_url: str = ""
    quarantine: Manifest | None = None  # what went to `quarantine`, if anything
    status: str = "passed"  # passed | rows_quarantined | batch_quarantined
    rows_validated: int = 0
    rows_quarantined: int = 0


# --- the suite ------------------------------------------------------------------------------

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
}
ROW_KINDS = frozenset({"not_null", "min", "max", "allowed", "regex"})  # judged row by row
GLOBAL_KINDS = frozenset({"unique", "row_count", "unique_key", "freshness"})
COMPUTED_KINDS = frozenset({"unique_key", "freshness"})  # never a GX expectation


def rule_specs(contract: Contract) -> list[RuleSpec]:
    """Every rule of a contract, in contract order (no GX needed)."""
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
    return specs


def rule_ids(contract: Contract) -> list[str]:
    return [s.rule for s in rule_specs(contract)]


def describe_rule(spec: RuleSpec) -> str:
    """`expect_...(column=..., key=value)`: what a rule checks, for people (no GX needed)."""
    args = ([f"column={spec.column!r}"] if spec.column else []) + [
        f"{k}={v!r}" for k, v in spec.kwargs.items() if k != "type_list"
    ]
    if "type_list" in spec.kwargs:
        args.append(f"dtypes={len(spec.kwargs['type_list'])} names")
    where = " [whole batch]" if spec.kind in GLOBAL_KINDS else ""
    return f"{EXPECTATIONS[spec.kind]}({', '.join(args)}){where}"


def build_suite(contract: Contract, *, per_partition: bool = False) -> gx.ExpectationSuite:
    """The GX suite of a contract: one expectation per rule, `meta` naming the rule.

    Rules we compute ourselves (`COMPUTED_KINDS`) are not in it; with `per_partition`, neither
    are the rules that need the whole batch (`GLOBAL_KINDS`).
    """
    g = _gx()
    gxe = g.expectations
    classes = {
        "exists": gxe.ExpectColumnToExist,
        "type": g.dtype_expectation,
        "not_null": gxe.ExpectColumnValuesToNotBeNull,
        "min": gxe.ExpectColumnValuesToBeBetween,
        "max": gxe.ExpectColumnValuesToBeBetween,
        "allowed": gxe.ExpectColumnValuesToBeInSet,
        "regex": gxe.ExpectColumnValuesToMatchRegex,
        "unique": gxe.ExpectColumnValuesToBeUnique,
        "row_count": gxe.ExpectTableRowCountToBeBetween,
    }
    skip = GLOBAL_KINDS if per_partition else COMPUTED_KINDS
    expectations = []
    for spec in rule_specs(contract):
        if spec.kind in skip:
            continue
        kwargs = dict(spec.kwargs)
        if spec.column is not None:
            kwargs["column"] = spec.column
        meta = {"rule": spec.rule, "column": spec.column, "contract_hash": contract.hash}
        expectations.append(classes[spec.kind](**kwargs, meta=meta))
    return g.gx.ExpectationSuite(
        name=_suite_name(contract, per_partition), expectations=expectations
    )


def _suite_name(contract: Contract, per_partition: bool = False) -> str:
    return f"{contract.dataset}-{contract.hash}{'-partition' if per_partition else ''}"


# --- GX, once per process -------------------------------------------------------------------


class _GXState:
    """The GX module, its ephemeral context and our pandas batch definition, per process."""

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.pid = os.getpid()
        self.gx = gx
        self.expectations = gxe
        self.dtype_expectation = _dtype_expectation_class(gxe)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        self.datasource = self.context.data_sources.add_pandas("mlpipe_pandas")
        asset = self.datasource.add_dataframe_asset("frames")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        self.validations: dict[str, Any] = {}  # suite name -> ValidationDefinition

    def validation_definition(self, contract: Contract, per_partition: bool = False):
        """The contract's whole suite as one validation definition (one GX run per frame)."""
        name = _suite_name(contract, per_partition)
        return self._definition(name, lambda: build_suite(contract, per_partition=per_partition))

    def column_definitions(self, contract: Contract, per_partition: bool = False) -> list:
        """The contract's suite split by column: `(column or None for table rules, definition)`.

        GX's pandas engine filters the whole batch frame by each expectation's unexpected-value
        mask (for samples and counts): on a frame of one column that costs one column, not all
        of them. Same expectations, same results; about half the time on flights-shaped frames.
        """
        name = _suite_name(contract, per_partition)
        key = f"{name}:columns"
        groups = self.validations.get(key)
        if groups is None:
            suite = build_suite(contract, per_partition=per_partition)
            by_column: dict[str | None, list] = {}
            for expectation in suite.expectations:
                by_column.setdefault(expectation.meta.get("column"), []).append(expectation)
            groups = []
            for column, expectations in by_column.items():
                label = column if column is not None else "<table>"

                def make(expectations=expectations, label=label):
                    return self.gx.ExpectationSuite(
                        name=f"{name}:{label}",
                        expectations=expectations,
                    )

                groups.append((column, self._definition(f"{name}:{label}", make)))
            self.validations[key] = groups
        return groups

    def _definition(self, name: str, make_suite):
        vd = self.validations.get(name)
        if vd is None:
            suite = self.context.suites.add(make_suite())
            vd = self.context.validation_definitions.add(
                self.gx.ValidationDefinition(name=name, data=self.batch_definition, suite=suite)
            )
            self.validations[name] = vd
        return vd

    def release(self) -> None:
        """Drop what GX keeps after a run: the frame (batch cache) and the stored result."""
        try:
            batches = self.datasource.get_execution_engine().batch_manager
            batches.reset_batch_cache()
            batches.batch_data_cache.clear()
        except AttributeError:  # GX internals moved; only memory is at stake
            log.debug("could not clear the GX batch cache", exc_info=True)
        store = self.context.validation_results_store
        for key in store.list_keys():
            store.remove_key(key)


_LOCK = threading.RLock()
_STATE: _GXState | None = None


def _gx() -> _GXState:
    global _STATE
    with _LOCK:
        if _STATE is None or _STATE.pid != os.getpid():
            started = time.perf_counter()
            _STATE = _GXState()
            log.debug("GX context ready in %.2fs", time.perf_counter() - started)
        return _STATE


_DTYPE_CLASS: type | None = None


def _dtype_expectation_class(gxe) -> type:
    """`ExpectColumnDtypeToMatch`: `ExpectColumnValuesToBeInTypeList` matched by dtype name.

    GX's own comparison tests `dtype in [np.dtype(name), getattr(pd, name)(), ...]`, which
    cannot express pandas 3's `str` dtype (StringDtype with na_value=nan), python-storage
    strings, or a tz-aware datetime64 of any unit and zone. This subclass keeps GX's metrics
    and its per-value path for object columns, and compares `str(dtype)` with names and
    `prefix*` entries instead.
    """
    global _DTYPE_CLASS
    if _DTYPE_CLASS is None:

        class ExpectColumnDtypeToMatch(gxe.ExpectColumnValuesToBeInTypeList):
            """Expect a column's dtype name to be one of `type_list` (`prefix*` allowed)."""

            def _validate_pandas(self, actual_column_type, expected_types_list):
                name = str(actual_column_type)
                success = expected_types_list is None or any(
                    name == p or (p.endswith("*") and name.startswith(p[:-1]))
                    for p in expected_types_list
                )
                return {"success": success, "result": {"observed_value": name}}

        _DTYPE_CLASS = ExpectColumnDtypeToMatch
    return _DTYPE_CLASS


# --- validating -----------------------------------------------------------------------------


RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": SAMPLE_SIZE,
    "return_unexpected_index_query": False,
}


def _run_gx(
    df: pd.DataFrame, contract: Contract, per_partition: bool, by_column: bool = True
) -> tuple[dict, str]:
    """GX results of a frame by rule id, and the GX version: the suite run column by column
    (`_GXState.column_definitions`) on one-column views of the frame; table rules on the
    frame. A column the frame lacks gets a frame without columns, so its rules fail as such.
    `by_column=False`: one run of the whole suite on the whole frame (same results, slower)."""
    results = []
    with _LOCK:
        g = _gx()
        if by_column:
            groups = g.column_definitions(contract, per_partition)
        else:
            groups = [(None, g.validation_definition(contract, per_partition))]
        try:
            for column, vd in groups:
                if column is None:
                    frame = df
                elif column in df.columns:
                    frame = df[[column]]
                else:
                    frame = df.iloc[:, :0]
                results += vd.run(
                    batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT
                ).results
                g.release()
        finally:
            g.release()
    return {r.expectation_config.meta.get("rule"): r for r in results}, g.gx.__version__


def validate_frame(
    df: pd.DataFrame,
    contract: Contract | str,
    *,
    batch_ref: str = "",
    partition: str | None = None,
    by_column: bool = True,
) -> ValidationReport:
    """Validate a pandas frame against a contract; never raises for data problems.

    `partition` (`date=2013-01-01`) is what freshness is measured against; it defaults to the
    partition in `batch_ref`. Without one, a freshness rule fails ("no partition").
    `by_column=False` runs the GX suite once on the whole frame, as GX is plainly used (the
    validation benchmark's reference) instead of column by column (see `_run_gx`).
    """
    contract = _contract(contract)
    specs = rule_specs(contract)
    partition = partition or _partition_of(batch_ref)
    started = time.perf_counter()
    by_rule, gx_version = _run_gx(df, contract, per_partition=False, by_column=by_column)
    columns = {str(c) for c in df.columns}
    rules = []
    for spec in specs:
        if spec.kind == "unique_key":
            rules.append(_unique_key_pandas(spec, df))
        elif spec.kind == "freshness":
            newest = df[spec.column].max() if spec.column in columns else None
            rules.append(_freshness_result(spec, contract, partition, newest, columns))
        else:
            rules.append(_rule_result(spec, by_rule.get(spec.rule), columns))
    return _report(contract, rules, len(df), batch_ref, started, gx_version)


def _report(
    contract: Contract,
    rules: list[dict[str, Any]],
    rows: int,
    batch_ref: str,
    started: float,
    gx_version: str,
) -> ValidationReport:
    report = ValidationReport(
        dataset=contract.dataset,
        contract_hash=contract.hash,
        success=all(r["success"] for r in rules),
        rows=rows,
        rules=rules,
        batch_ref=batch_ref,
        validated_at=datetime.now(UTC).isoformat(),
        duration_s=round(time.perf_counter() - started, 4),
        gx_version=gx_version,
    )
    log.debug(
        "validated %s rows of %s against %s rules in %.3fs: %s",
        report.rows,
        contract.dataset,
        len(rules),
        report.duration_s,
        "passed" if report.success else f"failed {report.failed_rules}",
    )
    return report


def _empty_result(spec: RuleSpec) -> dict[str, Any]:
    return {
        "rule": spec.rule,
        "column": spec.column,
        "expectation": EXPECTATIONS[spec.kind],
        "success": False,
        "unexpected_count": None,
        "unexpected_percent": None,
        "unexpected_sample": [],
        "observed_value": None,
        "error": None,
    }


def _rule_result(spec: RuleSpec, res: Any, columns: set[str]) -> dict[str, Any]:
    out = _empty_result(spec)
    if res is None:  # cannot happen unless GX drops an expectation; never pass silently
        out["error"] = "no result from Great Expectations"
        return out
    result = res.result or {}
    out["expectation"] = res.expectation_config.type
    out["success"] = bool(res.success)
    out["unexpected_count"] = _json_safe(result.get("unexpected_count"))
    out["unexpected_percent"] = _json_safe(result.get("unexpected_percent"))
    out["unexpected_sample"] = _json_safe(list(result.get("partial_unexpected_list") or []))[
        :SAMPLE_SIZE
    ]
    out["observed_value"] = _json_safe(result.get("observed_value"))
    if spec.column is not None and spec.column not in columns:
        out["success"] = False
        out["error"] = f"column {spec.column!r} is missing"
    else:
        out["error"] = _exception_message(res.exception_info)
    return out


def _exception_message(info: Any) -> str | None:
    """GX puts either one `{raised_exception, exception_message}` or a dict of them per metric."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info else list(info.values())
    messages = [
        str(e.get("exception_message"))
        for e in entries
        if isinstance(e, dict) and e.get("raised_exception")
    ]
    return "; ".join(messages) or None


def _json_safe(value: Any) -> Any:
    """GX result values (numpy scalars, Timestamps, NaN, NA) -> plain JSON values."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    import numpy as np
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.timedelta64 | pd.Timedelta):
        return str(pd.Timedelta(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _describe_failure(rule: dict[str, Any]) -> str:
    if rule.get("unexpected_count") is not None:
        return f"{rule['rule']} ({rule['unexpected_count']} unexpected)"
    if rule.get("error"):
        return f"{rule['rule']} ({rule['error']})"
    if rule.get("observed_value") is not None:
        return f"{rule['rule']} (observed {rule['observed_value']!r})"
    return f"{rule['rule']} (failed)"


# --- rules over the whole batch (pandas here, Dask in validate_dask) -------------------------


def _partition_of(batch_ref: str) -> str | None:
    parts = batch_ref.removeprefix("s3://").strip("/").split("/")
    return parts[2] if len(parts) == 4 else None


def partition_end(partition: str | None, granularity: str = "day"):
    """The end of a partition (`date=2013-01-01` -> 2013-01-02 00:00), None if not a date."""
    import pandas as pd

    if not partition:
        return None
    value = partition.split("=", 1)[-1]
    try:
        start = pd.Timestamp(value)
    except ValueError:
        return None
    if granularity == "hour":
        return start.floor("h") + pd.Timedelta(hours=1)
    if granularity == "month":
        return start.to_period("M").to_timestamp() + pd.offsets.MonthBegin(1)
    return start.normalize() + pd.Timedelta(days=1)


def _freshness_result(
    spec: RuleSpec, contract: Contract, partition: str | None, newest: Any, columns: set[str]
) -> dict[str, Any]:
    """Newest value of the column >= end of the partition - max_lag_hours (tz-aware columns:
    the partition's end is taken in UTC)."""
    import pandas as pd

    out = _empty_result(spec)
    lag = spec.kwargs["max_lag_hours"]
    end = partition_end(partition, contract.partition.get("granularity", "day"))
    if spec.column not in columns:
        out["error"] = f"column {spec.column!r} is missing"
        return out
    if end is None:
        out["error"] = f"no partition date to measure freshness against (partition {partition!r})"
        return out
    if newest is None or pd.isna(newest):
        out["error"] = f"column {spec.column!r} has no values"
        return out
    try:
        newest = pd.Timestamp(newest)
        if newest.tzinfo is not None:
            end = end.tz_localize("UTC")
        threshold = end - pd.Timedelta(hours=lag)
        out["observed_value"] = newest.isoformat()
        out["success"] = bool(newest >= threshold)
    except (TypeError, ValueError) as exc:  # not a timestamp: the type rule says so too
        out["error"] = f"cannot compare {newest!r} with the partition end: {exc}"
        return out
    if not out["success"]:
        out["error"] = (
            f"newest {spec.column} {newest.isoformat()} is older than {threshold.isoformat()} "
            f"(end of {partition} minus {lag:g} h)"
        )
    return out


def _key_frame(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The key columns of the rows that have a value in every key column."""
    return df[list(columns)].dropna()


def _unique_key_pandas(spec: RuleSpec, df: pd.DataFrame) -> dict[str, Any]:
    out = _empty_result(spec)
    cols = spec.kwargs["columns"]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        out["error"] = f"column(s) {missing} are missing"
        return out
    keys = _key_frame(df, cols)
    dup = keys[keys.duplicated(keep=False)]
    return _unique_key_result(out, len(dup), len(keys), dup.head(SAMPLE_SIZE))


def _unique_key_result(out: dict, duplicated: int, rows: int, sample: pd.DataFrame) -> dict:
    """Every row whose key occurs more than once counts (both copies), like GX's `unique`."""
    out["success"] = duplicated == 0
    out["unexpected_count"] = int(duplicated)
    out["unexpected_percent"] = 100.0 * duplicated / rows if rows else 0.0
    out["unexpected_sample"] = _json_safe(
        [dict(zip(sample.columns, row, strict=True)) for row in sample.itertuples(index=False)]
    )[:SAMPLE_SIZE]
    return out


# --- Dask: partition by partition, one merged result ------------------------------------------


def validate_partition(df: pd.DataFrame, contract: Contract) -> dict[str, Any]:
    """Run the per-partition suite on one partition (a Dask task; GX context cached per worker
    process). Returns small, mergeable partial results: rows and per-rule counts and samples."""
    by_rule, gx_version = _run_gx(df, contract, per_partition=True)
    columns = {str(c) for c in df.columns}
    rules = {}
    for spec in rule_specs(contract):
        if spec.kind in GLOBAL_KINDS:
            continue
        res = by_rule.get(spec.rule)
        out = _rule_result(spec, res, columns)
        result = (res.result or {}) if res is not None else {}
        elements = result.get("element_count") or 0
        missing = 0 if spec.kind == "not_null" else (result.get("missing_count") or 0)
        out["_denominator"] = int(elements - missing)
        rules[spec.rule] = out
    return {"rows": len(df), "rules": rules, "gx_version": gx_version}


def _partition_summary(df: pd.DataFrame, contract: Contract) -> pd.Series:
    """`validate_partition` as a one-element Series, so partitions map as a Dask expression."""
    import pandas as pd

    return pd.Series([validate_partition(df, contract)], dtype=object)


def _merge_partials(spec: RuleSpec, partials: list[dict[str, Any]]) -> dict[str, Any]:
    out = _empty_result(spec)
    results = [p["rules"][spec.rule] for p in partials]
    if not results:
        out["error"] = "no partitions"
        return out
    out["expectation"] = results[0]["expectation"]
    out["success"] = all(r["success"] for r in results)
    failing = [r for r in results if not r["success"]] or results
    out["observed_value"] = failing[0]["observed_value"]
    out["error"] = next((r["error"] for r in results if r["error"]), None)
    counts = [r["unexpected_count"] for r in results if r["unexpected_count"] is not None]
    if counts:
        total = sum(counts)
        denominator = sum(r["_denominator"] for r in results)
        out["unexpected_count"] = total
        out["unexpected_percent"] = 100.0 * total / denominator if denominator else 0.0
        sample: list = []
        for r in results:
            sample += r["unexpected_sample"][: SAMPLE_SIZE - len(sample)]
        out["unexpected_sample"] = sample
    return out


def _row_hashes(frame):
    import pandas as pd

    return pd.util.hash_pandas_object(frame, index=False)


MAX_BUCKETS = 64  # hash buckets of the whole-batch uniqueness count (see `validate_dask`)


def _partition_pass(
    df: pd.DataFrame,
    contract: Contract,
    unique_specs: tuple[tuple[str, tuple[str, ...]], ...],
    fresh_specs: tuple[tuple[str, str], ...],
    n_buckets: int,
) -> tuple[dict[str, Any], dict[str, list]]:
    """Everything validation needs from one partition, in one read of it: the per-partition GX
    suite (`validate_partition`), the newest value of each freshness column, and for each
    uniqueness rule the 64-bit hashes of the rows' keys, split into `n_buckets` buckets by
    `hash % n_buckets` (each bucket is then counted on its own: see `validate_dask`)."""
    import numpy as np

    summary = validate_partition(df, contract)
    summary["newest"] = {
        rule: df[column].max() if len(df) else None for rule, column in fresh_specs
    }
    summary["key_rows"] = {}
    buckets: dict[str, list] = {}
    for rule, cols in unique_specs:
        hashes = _row_hashes(_key_frame(df, cols)).to_numpy()
        summary["key_rows"][rule] = len(hashes)
        bucket = hashes % np.uint64(n_buckets)
        order = np.argsort(bucket, kind="stable")
        hashes, bucket = hashes[order], bucket[order]
        bounds = np.searchsorted(bucket, np.arange(n_buckets + 1, dtype=np.uint64))
        buckets[rule] = [hashes[bounds[b] : bounds[b + 1]] for b in range(n_buckets)]
    return summary, buckets


def _summary(work: tuple[dict, dict]) -> dict[str, Any]:
    return work[0]


def _bucket(work: tuple[dict, dict], rule: str, b: int):
    return work[1][rule][b]


def _count_duplicates(*chunks) -> tuple[int, list[int]]:
    """Rows whose key hash occurs more than once in one bucket (all copies count, like GX's
    `unique`), and up to `SAMPLE_SIZE` of those hashes."""
    import numpy as np

    hashes = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)
    values, counts = np.unique(hashes, return_counts=True)
    repeated = counts > 1
    return int(counts[repeated].sum()), [int(v) for v in values[repeated][:SAMPLE_SIZE]]


def _newest(values: list[Any]) -> Any:
    import pandas as pd

    present = [v for v in values if v is not None and not pd.isna(v)]
    try:
        return max(present) if present else None
    except TypeError:  # mixed types: the type rule reports it; freshness compares the first
        return present[0]


def validate_dask(
    ddf,
    contract: Contract | str,
    *,
    batch_ref: str = "",
    partition: str | None = None,
) -> ValidationReport:
    """Validate a Dask frame partition by partition on the current Dask scheduler.

    One task per partition reads it once and runs the per-partition GX suite on it
    (`validate_partition`, in parallel), takes the newest value of each freshness column, and
    hashes the keys of each uniqueness rule (a column or a key) into 64-bit hashes split into
    buckets by `hash % B`. Bucket `b` of every partition is then counted by one task, so
    duplicates across the whole batch are found with memory of about one partition's hashes
    per task (8 bytes a row, over B buckets) and no shuffle of rows. Row count and freshness
    merge from the partitions' summaries. Only partial results, counts and samples come back.
    """
    import dask

    contract = _contract(contract)
    specs = rule_specs(contract)
    partition = partition or _partition_of(batch_ref)
    started = time.perf_counter()
    columns = {str(c) for c in ddf.columns}
    unique_specs = tuple(
        (spec.rule, cols)
        for spec in specs
        if (cols := _global_columns(spec)) is not None and set(cols) <= columns
    )
    fresh_specs = tuple(
        (s.rule, s.column) for s in specs if s.kind == "freshness" and s.column in columns
    )
    n_buckets = max(1, min(ddf.npartitions, MAX_BUCKETS)) if unique_specs else 1

    work = [
        dask.delayed(_partition_pass, pure=True)(
            part, contract, unique_specs, fresh_specs, n_buckets
        )
        for part in ddf.to_delayed()
    ]
    summaries = [dask.delayed(_summary, pure=True)(w) for w in work]
    counted = {
        rule: [
            dask.delayed(_count_duplicates, pure=True)(
                *[dask.delayed(_bucket, pure=True)(w, rule, b) for w in work]
            )
            for b in range(n_buckets)
        ]
        for rule, _ in unique_specs
    }
    parts, counted = dask.compute(summaries, counted)
    parts = list(parts)

    rows = sum(p["rows"] for p in parts)
    gx_version = parts[0]["gx_version"] if parts else ""
    rules = []
    for spec in specs:
        if spec.kind not in GLOBAL_KINDS:
            rules.append(_merge_partials(spec, parts))
        elif spec.kind == "row_count":
            rules.append(_row_count_result(spec, rows))
        elif spec.kind == "freshness":
            newest = _newest([p["newest"].get(spec.rule) for p in parts])
            rules.append(_freshness_result(spec, contract, partition, newest, columns))
        else:
            rules.append(_dask_unique_result(spec, ddf, parts, counted.get(spec.rule), columns))
    return _report(contract, rules, rows, batch_ref, started, gx_version)


def _global_columns(spec: RuleSpec) -> tuple[str, ...] | None:
    if spec.kind == "unique_key":
        return tuple(spec.kwargs["columns"])
    if spec.kind == "unique":
        return (spec.column,)
    return None


def _row_count_result(spec: RuleSpec, rows: int) -> dict[str, Any]:
    out = _empty_result(spec)
    low, high = spec.kwargs.get("min_value"), spec.kwargs.get("max_value")
    out["observed_value"] = rows
    out["success"] = (low is None or rows >= low) and (high is None or rows <= high)
    return out


def _dask_unique_result(spec, ddf, parts, counted, columns) -> dict[str, Any]:
    out = _empty_result(spec)
    cols = _global_columns(spec)
    missing = [c for c in cols if c not in columns]
    if missing:
        out["error"] = f"column(s) {missing} are missing"
        return out
    duplicated = sum(n for n, _ in counted)
    rows = sum(p["key_rows"][spec.rule] for p in parts)
    sample = None
    if duplicated:  # a second pass over the key columns: rows of up to SAMPLE_SIZE duplicates
        wanted = [h for _, hashes in counted for h in hashes][:SAMPLE_SIZE]
        keys = ddf[list(cols)].dropna()
        h = keys.map_partitions(_row_hashes, meta=("hash", "uint64"))
        sample = keys[h.isin(wanted)].head(SAMPLE_SIZE, npartitions=-1)
    if spec.kind == "unique_key":
        import pandas as pd

        return _unique_key_result(
            out, duplicated, rows, sample if sample is not None else pd.DataFrame()
        )
    out["success"] = duplicated == 0
    out["unexpected_count"] = duplicated
    out["unexpected_percent"] = 100.0 * duplicated / rows if rows else 0.0
    if sample is not None:
        out["unexpected_sample"] = _json_safe(list(sample[spec.column]))[:SAMPLE_SIZE]
    return out


# --- rows, PII --------------------------------------------------------------------------------


def row_failures(df: pd.DataFrame, contract: Contract) -> pd.Series:
    """For each row, the ids of the row-level rules it breaks (`ROW_KINDS`), as a list.

    Same semantics as the GX expectations: value rules ignore missing values, bounds are
    inclusive, regexes are searched in the value's text.
    """
    import numpy as np
    import pandas as pd

    names = np.empty(len(df), dtype=object)
    names[:] = [[] for _ in range(len(df))]
    for spec in rule_specs(contract):
        if spec.kind not in ROW_KINDS or spec.column not in df.columns:
            continue
        col = df[spec.column]
        present = col.notna()
        if spec.kind == "not_null":
            bad = ~present
        elif spec.kind == "min":
            bad = present & (col < spec.kwargs["min_value"])
        elif spec.kind == "max":
            bad = present & (col > spec.kwargs["max_value"])
        elif spec.kind == "allowed":
            bad = present & ~col.isin(spec.kwargs["value_set"])
        else:
            text = col[present].astype(str)
            matched = text.str.contains(spec.kwargs["regex"], regex=True)
            bad = present.copy()
            bad[present] = ~matched.astype(bool)
        for i in np.flatnonzero(bad.fillna(False).to_numpy(dtype=bool)):
            names[i].append(spec.rule)
    return pd.Series(names, index=df.index, name=FAILED_RULES, dtype=object)


class PIIError(ConfigurationError):
    """A contract hashes PII but no salt is configured."""


def pii_salt(contract: Contract, settings: Settings | None = None) -> bytes | None:
    """The salt for the contract's hashed PII columns (None when it hashes none)."""
    hashed = sorted(c for c, action in contract.pii.items() if action == "hash")
    if not hashed:
        return None
    salt = (settings or get_settings()).pii_salt
    if salt is None or not salt.get_secret_value():
        raise PIIError(
            f"contract {contract.dataset} ({contract.path}) hashes PII column(s) {hashed}, but "
            "no salt is configured: set MLPIPE_PII_SALT (settings.pii_salt)"
        )
    return salt.get_secret_value().encode()


def apply_pii(df: pd.DataFrame, contract: Contract, salt: bytes | None) -> pd.DataFrame:
    """Drop or hash the contract's PII columns (hash: HMAC-SHA256 hex of the value's text with
    the salt; missing values stay missing)."""
    import pandas as pd

    if not contract.pii:
        return df
    out = df.drop(columns=[c for c, a in contract.pii.items() if a == "drop" and c in df])
    for col, action in contract.pii.items():
        if action != "hash" or col not in out:
            continue
        if salt is None:
            raise PIIError(f"contract {contract.dataset}: no salt to hash PII column {col!r}")
        values = out[col]
        hashed = [
            None if pd.isna(v) else hmac.new(salt, str(v).encode(), hashlib.sha256).hexdigest()
            for v in values
        ]
        out[col] = pd.Series(hashed, index=out.index, dtype="string")
    return out


# --- batches ------------------------------------------------------------------------------------


def _contract(contract: Contract | str) -> Contract:
    return contract if isinstance(contract, Contract) else load_contract(contract)


def report_key(dataset: str, partition: str, batch_id: str) -> str:
    """Key (without extension) of a batch's validation report in the `reports` zone."""
    return f"{REPORT_PREFIX}/{dataset}/{partition}/{batch_id}"


def validate_batch(
    ref: str,
    contract: Contract | str | None = None,
    *,
    settings: Settings | None = None,
    use_dask: bool | None = None,
) -> ValidationOutcome:
    """Validate a committed raw batch and act on the contract's failure policy.

    `ref` is `s3://raw/<dataset>/<partition>/<batch_id>`; `contract` defaults to the batch's
    dataset. Batches over `DASK_MIN_ROWS` rows (or any, with `use_dask=True`) are validated on
    the Dask cluster (`ml.cluster.dask_client`), partition by partition; smaller ones in this
    process. The report goes to the `reports` zone as JSON and HTML either way.

    - passed: the batch goes to `validated` (PII dropped/hashed);
    - `quarantine_rows`, only row rules broken, bad fraction <= max: bad rows (with
      `_failed_rules`) to `quarantine`, good rows to `validated`; returns (passed, logs a warning);
    - otherwise the whole batch goes to `quarantine` with `_report.json`; then
      `on_failure: fail` raises `ContractViolation`, `warn` logs it and returns.
    """
    from ml import storage

    s = settings or get_settings()
    manifest = storage.read_manifest(ref, s)
    if manifest.zone != "raw":
        raise ValueError(f"{ref}: only raw batches are validated, this one is in {manifest.zone!r}")
    contract = _contract(contract if contract is not None else manifest.dataset)
    if contract.dataset != manifest.dataset:
        raise ValueError(
            f"{ref}: batch of dataset {manifest.dataset!r} checked against contract "
            f"{contract.dataset!r}"
        )
    salt = pii_salt(contract, s)  # fail before anything is written
    if use_dask is None:
        use_dask = manifest.rows > DASK_MIN_ROWS
    if use_dask:
        from ml.cluster import dask_client

        with dask_client(s):
            ddf = storage.read_dask([manifest], s)
            report = validate_dask(ddf, contract, batch_ref=manifest.ref)
    else:
        df = storage.read_batch(manifest, s)
        report = validate_frame(df, contract, batch_ref=manifest.ref)
        del df

    key = report_key(manifest.dataset, manifest.partition, manifest.batch_id)
    report_url = storage.write_json("reports", f"{key}.json", report.to_dict(), s)
    html_path = f"{s.bucket('reports')}/{key}.html"
    storage.filesystem(s).pipe_file(
        html_path, report.to_html().encode(), ContentType="text/html; charset=utf-8"
    )
    html_url = f"s3://{html_path}"
    extra = {
        "validation_report": report_url,
        "validation_report_html": html_url,
        "contract_hash": contract.hash,
        "validation_passed": report.success,
    }
    pii_extra = {"pii": dict(contract.pii)} if contract.pii else {}
    if report.success:
        target = _to_validated(manifest, contract, salt, {**extra, **pii_extra}, s)
        log.info(
            "%s passed contract %s (%s rows, %s rules, %.2fs): %s",
            manifest.ref,
            contract.dataset,
            report.rows,
            len(report.rules),
            report.duration_s,
            target.ref,
        )
        return ValidationOutcome(
            report, report_url, target, True, html_url, rows_validated=manifest.rows
        )

    policy = contract.policy
    extra["failed_rules"] = report.failed_rules
    reason = "contract violation"
    row_rules_only = all(
        spec.kind in ROW_KINDS for spec in rule_specs(contract) if spec.rule in report.failed_rules
    )
    if policy.mode == "quarantine_rows" and not row_rules_only:
        reason = "a table-level or column-level rule failed (not only row rules)"
    elif policy.mode == "quarantine_rows":
        # the rules each bad row broke, part by part (small: at most max_bad_fraction of rows)
        failures = []
        for df in storage.read_parts(manifest, s):
            failed = row_failures(df, contract).reset_index(drop=True)
            failures.append(failed[failed.map(bool).to_numpy(dtype=bool)])
        bad = sum(len(f) for f in failures)
        fraction = bad / manifest.rows if manifest.rows else 1.0
        if bad == 0:
            reason = "the row rules failed but no row could be singled out"
        elif fraction > policy.max_bad_fraction:
            reason = (
                f"{bad} of {manifest.rows} rows bad ({fraction:.2%}), over max_bad_fraction "
                f"{policy.max_bad_fraction:g}"
            )
        else:
            return _split_rows(manifest, contract, salt, report, extra, pii_extra, failures, s)

    extra["quarantine_reason"] = reason
    target = storage.copy_batch(
        manifest,
        "quarantine",
        extra=extra,
        files={"_report.json": report.to_json().encode()},
        settings=s,
    )
    outcome = ValidationOutcome(
        report,
        report_url,
        target,
        False,
        html_url,
        quarantine=target,
        status="batch_quarantined",
        rows_quarantined=manifest.rows,
    )
    message = (
        f"batch {manifest.ref} broke contract {contract.dataset} ({contract.hash}): "
        f"{report.failure_summary()}; {reason}; whole batch quarantined at {target.ref}; "
        f"report: {report_url}"
    )
    if policy.on_failure == "warn":
        log.warning("%s (on_failure: warn, the task goes on)", message)
        return outcome
    log.warning("%s", message)
    raise ContractViolation(
        message, ref=manifest.ref, report=report, report_url=report_url, outcome=outcome
    )


def _to_validated(
    manifest: Manifest, contract: Contract, salt: bytes | None, extra: dict, s: Settings
) -> Manifest:
    from ml import storage

    if not contract.pii:
        return storage.copy_batch(manifest, "validated", extra=extra, settings=s)
    frames = (apply_pii(df, contract, salt) for df in storage.read_parts(manifest, s))
    return storage.write_parts(frames, "validated", manifest, extra=extra, settings=s)


def _split_rows(
    manifest: Manifest,
    contract: Contract,
    salt: bytes | None,
    report: ValidationReport,
    extra: dict[str, Any],
    pii_extra: dict[str, Any],
    failures: list[pd.Series],
    s: Settings,
) -> ValidationOutcome:
    """Good rows to `validated` (PII applied), bad rows as they were (plus `_failed_rules`) to
    `quarantine`, part by part in one more read of the batch; both under the raw batch's id.
    `failures` holds, per part, the failed rules of its bad rows (index = row position)."""
    import numpy as np

    from ml import storage

    bad = sum(len(f) for f in failures)
    good_rows = manifest.rows - bad
    held_ref = storage.ref_in_zone(manifest.ref, "quarantine", s)
    kept_ref = storage.ref_in_zone(manifest.ref, "validated", s)
    held_writer = storage.PartsWriter("quarantine", manifest, settings=s)
    kept_writer = storage.PartsWriter("validated", manifest, settings=s)
    for df, failed in zip(storage.read_parts(manifest, s), failures, strict=True):
        is_bad = np.zeros(len(df), dtype=bool)
        is_bad[failed.index.to_numpy()] = True
        held = df[is_bad].reset_index(drop=True)
        held[FAILED_RULES] = failed.reset_index(drop=True)
        held_writer.add(held)
        kept_writer.add(apply_pii(df[~is_bad].reset_index(drop=True), contract, salt))
    report_url = extra["validation_report"]
    held = held_writer.commit(
        extra={
            **extra,
            "quarantine_reason": f"{bad} of {manifest.rows} rows broke row rules",
            "quarantined_rows": bad,
            "validated_rows": good_rows,
            "validated": kept_ref,
            "max_bad_fraction": contract.policy.max_bad_fraction,
        },
        files={"_report.json": report.to_json().encode()},
    )
    kept = kept_writer.commit(
        extra={**extra, **pii_extra, "quarantined_rows": bad, "quarantine": held_ref}
    )
    log.warning(
        "batch %s: %s of %s rows broke %s (within max_bad_fraction %g): quarantined at %s, "
        "%s good rows validated at %s; report: %s",
        manifest.ref,
        bad,
        manifest.rows,
        report.failure_summary(),
        contract.policy.max_bad_fraction,
        held.ref,
        good_rows,
        kept.ref,
        report_url,
    )
    return ValidationOutcome(
        report,
        report_url,
        kept,
        True,
        extra["validation_report_html"],
        quarantine=held,
        status="rows_quarantined",
        rows_validated=good_rows,
        rows_quarantined=bad,
    )


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.3em; } table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } .pass { color: #176f2c; } .fail { color: #b00020; font-weight: bold; }
tr.failed { background: #fff1f1; } code { font-size: 0.95em; } dl { display: grid;
grid-template-columns: max-content auto; gap: 0.2em 1em; } dt { font-weight: bold; }
"""


def _render_html(report: ValidationReport) -> str:
    e = html.escape
    failed = not report.success
    status = "FAILED" if failed else "PASSED"
    css_class = "pass" if report.success else "fail"
    head = [
        ("Dataset", report.dataset),
        ("Batch", report.batch_ref or "-"),
        ("Contract hash", report.contract_hash),
        ("Rows", str(report.rows)),
        ("Rules", f"{len(report.rules)} ({len(report.failed_rules)} failed)"),
        ("Validated at", report.validated_at),
        ("Great Expectations", report.gx_version),
    ]
    rows = []
    for r in report.rules:
        ok = r["success"]
        sample = ", ".join(json.dumps(v) for v in r["unexpected_sample"])
        percent = r["unexpected_percent"]
        cells = [
            f"<code>{e(r['rule'])}</code>",
            e(r["column"] or "(table)"),
            f"<code>{e(r['expectation'])}</code>",
            f'<span class="{"pass" if ok else "fail"}">{"pass" if ok else "FAIL"}</span>',
            e("" if r["unexpected_count"] is None else str(r["unexpected_count"])),
            e("" if percent is None else f"{percent:.3g}%"),
            e("" if r["observed_value"] is None else json.dumps(r["observed_value"])),
            e(sample),
            e(r["error"] or ""),
        ]
        row_class = "" if ok else ' class="failed"'
        rows.append(f"<tr{row_class}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    headers = ["Rule", "Column", "Expectation", "Result", "Unexpected", "%", "Observed"]
    headers += [f"Sample (up to {SAMPLE_SIZE})", "Error"]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(report.dataset)} validation: {status}</title>",
            f"<style>{_CSS}</style></head><body>",
            f'<h1>{e(report.dataset)} validation: <span class="{css_class}">{status}</span></h1>',
            "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in head) + "</dl>",
            f"<p><strong>Failed:</strong> {e(report.failure_summary())}</p>" if failed else "",
            "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead>",
            "<tbody>",
            *rows,
            "</tbody></table></body></html>",
        ]
    )
