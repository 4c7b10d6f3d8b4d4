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

Value rules ignore missing values (only `not_null` looks at them). `unique` counts every row
whose value occurs more than once (both copies of a duplicate).

`import great_expectations` is slow (3-4 s, ~280 MB), so it happens on first use, and the
ephemeral context, data source, asset and batch definition are made once per process (the
suites and validation definitions once per contract hash). Validation runs under a process-wide
lock: GX contexts are not documented as thread-safe.
"""

from __future__ import annotations

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

from ml.contracts import Contract, ContractError, load_contract
from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

    from ml.storage import Manifest

log = logging.getLogger(__name__)

SAMPLE_SIZE = 10  # unexpected values kept per rule in a report
REPORT_PREFIX = "validation"  # reports zone: validation/<dataset>/<partition>/<batch_id>.json|.html
TABLE_RULES = ("row_count",)

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


class ContractViolation(ValueError):
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
    manifest: Manifest  # in `validated` when passed, in `quarantine` otherwise
    passed: bool
    report_html_url: str = ""


# --- the suite ------------------------------------------------------------------------------


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
    unknown = set(contract.table) - set(TABLE_RULES)
    if unknown:
        raise ContractError(
            f"{contract.path}: table: rule(s) {sorted(unknown)} cannot be validated; "
            f"supported: {list(TABLE_RULES)}"
        )
    if "row_count" in contract.table:
        bounds = contract.table["row_count"]
        if not isinstance(bounds, dict) or not set(bounds) <= {"min", "max"} or not bounds:
            raise ContractError(
                f"{contract.path}: table.row_count: expected a mapping with min and/or max"
            )
        specs.append(
            RuleSpec(
                f"{ds}.table.row_count",
                "row_count",
                None,
                {"min_value": bounds.get("min"), "max_value": bounds.get("max")},
            )
        )
    return specs


def rule_ids(contract: Contract) -> list[str]:
    return [s.rule for s in rule_specs(contract)]


def build_suite(contract: Contract) -> gx.ExpectationSuite:
    """The GX suite of a contract: one expectation per rule, `meta` naming the rule."""
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
    expectations = []
    for spec in rule_specs(contract):
        kwargs = dict(spec.kwargs)
        if spec.column is not None:
            kwargs["column"] = spec.column
        meta = {"rule": spec.rule, "column": spec.column, "contract_hash": contract.hash}
        expectations.append(classes[spec.kind](**kwargs, meta=meta))
    return g.gx.ExpectationSuite(name=_suite_name(contract), expectations=expectations)


def _suite_name(contract: Contract) -> str:
    return f"{contract.dataset}-{contract.hash}"


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

    def validation_definition(self, contract: Contract):
        name = _suite_name(contract)
        vd = self.validations.get(name)
        if vd is None:
            suite = self.context.suites.add(build_suite(contract))
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


def validate_frame(
    df: pd.DataFrame, contract: Contract | str, *, batch_ref: str = ""
) -> ValidationReport:
    """Validate a pandas frame against a contract; never raises for data problems."""
    contract = _contract(contract)
    specs = rule_specs(contract)
    started = time.perf_counter()
    with _LOCK:
        g = _gx()
        vd = g.validation_definition(contract)
        try:
            result = vd.run(
                batch_parameters={"dataframe": df},
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": SAMPLE_SIZE,
                },
            )
        finally:
            g.release()
    by_rule = {r.expectation_config.meta.get("rule"): r for r in result.results}
    columns = {str(c) for c in df.columns}
    rules = [_rule_result(spec, by_rule.get(spec.rule), columns) for spec in specs]
    report = ValidationReport(
        dataset=contract.dataset,
        contract_hash=contract.hash,
        success=all(r["success"] for r in rules),
        rows=len(df),
        rules=rules,
        batch_ref=batch_ref,
        validated_at=datetime.now(UTC).isoformat(),
        duration_s=round(time.perf_counter() - started, 4),
        gx_version=g.gx.__version__,
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


def _rule_result(spec: RuleSpec, res: Any, columns: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule": spec.rule,
        "column": spec.column,
        "expectation": "",
        "success": False,
        "unexpected_count": None,
        "unexpected_percent": None,
        "unexpected_sample": [],
        "observed_value": None,
        "error": None,
    }
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


def _contract(contract: Contract | str) -> Contract:
    return contract if isinstance(contract, Contract) else load_contract(contract)


def report_key(dataset: str, partition: str, batch_id: str) -> str:
    """Key (without extension) of a batch's validation report in the `reports` zone."""
    return f"{REPORT_PREFIX}/{dataset}/{partition}/{batch_id}"


def validate_batch(
    ref: str, contract: Contract | str | None = None, *, settings: Settings | None = None
) -> ValidationOutcome:
    """Validate a committed raw batch; copy it to `validated`, or to `quarantine` and raise.

    `ref` is `s3://raw/<dataset>/<partition>/<batch_id>`; `contract` defaults to the batch's
    dataset. The report goes to the `reports` zone as JSON and HTML either way. On failure the
    batch is copied to `quarantine` with `_report.json` beside its parts and `ContractViolation`
    is raised (its `.outcome` holds the quarantine manifest).
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
    if report.success:
        target = storage.copy_batch(manifest, "validated", extra=extra, settings=s)
        log.info(
            "%s passed contract %s (%s rows, %s rules, %.2fs): %s",
            manifest.ref,
            contract.dataset,
            report.rows,
            len(report.rules),
            report.duration_s,
            target.ref,
        )
        return ValidationOutcome(report, report_url, target, True, html_url)

    extra["failed_rules"] = report.failed_rules
    target = storage.copy_batch(
        manifest,
        "quarantine",
        extra=extra,
        files={"_report.json": report.to_json().encode()},
        settings=s,
    )
    outcome = ValidationOutcome(report, report_url, target, False, html_url)
    message = (
        f"batch {manifest.ref} broke contract {contract.dataset} ({contract.hash}): "
        f"{report.failure_summary()}; quarantined at {target.ref}; report: {report_url}"
    )
    log.warning("%s", message)
    raise ContractViolation(
        message, ref=manifest.ref, report=report, report_url=report_url, outcome=outcome
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
