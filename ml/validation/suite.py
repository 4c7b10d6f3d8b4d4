"""The Great Expectations (1.x) suite of a contract, and `validate_frame`: one pandas frame, checked.

`build_suite`: one expectation per contract rule, every expectation carrying its rule id in
`meta`. `import great_expectations` is slow (3-4 s, ~280 MB), so it happens on first use, and the
ephemeral context, data source, asset and batch definition are made once per process (the
suites and validation definitions once per contract hash). GX runs under a process-wide lock:
GX contexts are not documented as thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ml.contracts import Contract
from ml.validation.checks import (
    extra_columns_result,
    freshness_result,
    partition_of,
    unique_key_pandas,
)
from ml.validation.report import (
    SAMPLE_SIZE,
    ValidationReport,
    empty_result,
    json_safe,
    make_report,
)
from ml.validation.rules import COMPUTED_KINDS, GLOBAL_KINDS, RuleSpec, as_contract, rule_specs

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

log = logging.getLogger(__name__)


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


BY_COLUMN_MIN_ROWS = 20_000  # frames this large are validated column by column (run_gx)
RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": SAMPLE_SIZE,
    "return_unexpected_index_query": False,
}


def run_gx(
    df: pd.DataFrame,
    contract: Contract,
    per_partition: bool,
    by_column: bool | None = None,
    result_format: dict | None = None,
) -> tuple[dict, str]:
    """GX results of a frame by rule id, and the GX version: the suite run column by column
    (`_GXState.column_definitions`) on one-column views of the frame; table rules on the
    frame. A column the frame lacks gets a frame without columns, so its rules fail as such.
    `by_column=False`: one run of the whole suite on the whole frame (same results, slower on
    large frames). None: by column from `BY_COLUMN_MIN_ROWS` rows on; a smaller frame costs
    GX's fixed cost per run, not its rows, so one run serves it best (a one-row batch: ~0.05 s
    instead of ~0.3 s with a run per column). `result_format`: GX's (default `RESULT_FORMAT`)."""
    if by_column is None:
        by_column = len(df) >= BY_COLUMN_MIN_ROWS
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
                    batch_parameters={"dataframe": frame},
                    result_format=result_format or RESULT_FORMAT,
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
    by_column: bool | None = None,
) -> ValidationReport:
    """Validate a pandas frame against a contract; never raises for data problems.

    `partition` (`date=2013-01-01`) is what freshness is measured against; it defaults to the
    partition in `batch_ref`. Without one, a freshness rule fails ("no partition").
    `by_column=False` runs the GX suite once on the whole frame, as GX is plainly used (the
    validation benchmark's reference) instead of column by column (see `run_gx`).
    """
    contract = as_contract(contract)
    specs = rule_specs(contract)
    partition = partition or partition_of(batch_ref)
    started = time.perf_counter()
    by_rule, gx_version = run_gx(df, contract, per_partition=False, by_column=by_column)
    columns = {str(c) for c in df.columns}
    rules = []
    for spec in specs:
        if spec.kind == "unique_key":
            rules.append(unique_key_pandas(spec, df))
        elif spec.kind == "freshness":
            newest = df[spec.column].max() if spec.column in columns else None
            rules.append(freshness_result(spec, contract, partition, newest, columns))
        elif spec.kind == "extra_columns":
            rules.append(extra_columns_result(spec, [str(c) for c in df.columns]))
        else:
            rules.append(rule_result(spec, by_rule.get(spec.rule), columns))
    return make_report(contract, rules, len(df), batch_ref, started, gx_version)


def rule_result(spec: RuleSpec, res: Any, columns: set[str]) -> dict[str, Any]:
    """A rule's result from its GX expectation result (`res`) on a frame with `columns`."""
    out = empty_result(spec)
    if res is None:  # cannot happen unless GX drops an expectation; never pass silently
        out["error"] = "no result from Great Expectations"
        return out
    result = res.result or {}
    out["expectation"] = res.expectation_config.type
    out["success"] = bool(res.success)
    out["unexpected_count"] = json_safe(result.get("unexpected_count"))
    out["unexpected_percent"] = json_safe(result.get("unexpected_percent"))
    out["unexpected_sample"] = json_safe(list(result.get("partial_unexpected_list") or []))[
        :SAMPLE_SIZE
    ]
    out["observed_value"] = json_safe(result.get("observed_value"))
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
