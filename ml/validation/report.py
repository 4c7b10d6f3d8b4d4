"""The validation report: one result per contract rule, its JSON and its HTML page.

Both engines (`suite.validate_frame`, `execute.validate_dask`) give the same shape: a list of
rule dicts (rule, column, expectation, success, unexpected_count, unexpected_percent,
unexpected_sample, observed_value, error), JSON-safe (`json_safe`). Reports lie in the `reports`
zone under `validation/<dataset>/<partition>/<batch_id>.json|.html` (`report_key`).
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ml.commit import forget_listings
from ml.contracts import Contract
from ml.validation.rules import EXPECTATIONS, RuleSpec

log = logging.getLogger(__name__)

SAMPLE_SIZE = 10  # unexpected values kept per rule in a report
REPORT_PREFIX = "validation"  # reports zone: validation/<dataset>/<partition>/<batch_id>.json|.html


@dataclass(frozen=True)
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


def report_key(dataset: str, partition: str, batch_id: str) -> str:
    """Key (without extension) of a batch's validation report in the `reports` zone."""
    return f"{REPORT_PREFIX}/{dataset}/{partition}/{batch_id}"


def recent_reports(dataset: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest validation reports of a dataset (newest batch first), each summed up: partition,
    batch id, success, rows, failed rules, when, and the keys of its JSON and HTML in `reports`."""
    from ml import storage  # deferred: reports are made without storage; only reading lists them
    from ml.settings import get_settings  # deferred: as above

    s = get_settings()
    fs = storage.filesystem(s)
    base = f"{s.bucket('reports')}/{REPORT_PREFIX}/{dataset}"
    forget_listings(fs, base)
    paths = sorted(fs.glob(f"{base}/*/*.json"), key=lambda p: p.rsplit("/", 1)[-1], reverse=True)
    out = []
    for path in paths[:limit]:
        doc = json.loads(fs.cat_file(path).decode())
        key = path.removeprefix(f"{s.bucket('reports')}/").removesuffix(".json")
        out.append(
            {
                "partition": key.split("/")[-2],
                "batch_id": key.split("/")[-1],
                "success": doc.get("success"),
                "rows": doc.get("rows"),
                "failed_rules": doc.get("failed_rules", []),
                "validated_at": doc.get("validated_at", ""),
                "json_key": f"{key}.json",
                "html_key": f"{key}.html",
            }
        )
    return out


def make_report(
    contract: Contract,
    rules: list[dict[str, Any]],
    rows: int,
    batch_ref: str,
    started: float,
    gx_version: str,
) -> ValidationReport:
    """The report of rule results computed since `started` (a `time.perf_counter()` value).
    Sample values of the contract's PII columns are redacted: reports are read more widely than
    the data."""
    rules = redact_pii(rules, set(contract.pii))
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


REDACTED = "<redacted: pii>"


def redact_pii(rules: list[dict[str, Any]], pii_columns: set[str]) -> list[dict[str, Any]]:
    """The rule results with every sample value of a PII column replaced by `REDACTED` (a rule
    on that column, or that column inside a multi-column sample such as a duplicate key)."""
    if not pii_columns:
        return rules

    def redact(value: Any, column: str | None) -> Any:
        if isinstance(value, dict):
            return {k: REDACTED if k in pii_columns else v for k, v in value.items()}
        return REDACTED if column in pii_columns else value

    return [
        {**r, "unexpected_sample": [redact(v, r.get("column")) for v in r["unexpected_sample"]]}
        if r.get("unexpected_sample")
        else r
        for r in rules
    ]


def empty_result(spec: RuleSpec) -> dict[str, Any]:
    """A rule's result before anything is known: failed, no counts (fill in what is found)."""
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


def json_safe(value: Any) -> Any:
    """GX result values (numpy scalars, Timestamps, NaN, NA) -> plain JSON values."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
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
        return json_safe(value.item())
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


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.3em; } table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } .pass { color: #176f2c; } .fail { color: #b00020; font-weight: bold; }
tr.failed { background: #fff1f1; } code { font-size: 0.95em; } dl { display: grid;
grid-template-columns: max-content auto; gap: 0.2em 1em; } dt { font-weight: bold; }
"""
_HEADERS = ["Rule", "Column", "Expectation", "Result", "Unexpected", "%", "Observed"]
_HEADERS += [f"Sample (up to {SAMPLE_SIZE})", "Error"]


def _html_row(r: dict[str, Any]) -> str:
    """One rule as a table row."""
    e = html.escape
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
    return f"<tr{row_class}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


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
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(report.dataset)} validation: {status}</title>",
            f"<style>{_CSS}</style></head><body>",
            f'<h1>{e(report.dataset)} validation: <span class="{css_class}">{status}</span></h1>',
            "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in head) + "</dl>",
            f"<p><strong>Failed:</strong> {e(report.failure_summary())}</p>" if failed else "",
            "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in _HEADERS) + "</tr></thead>",
            "<tbody>",
            *(_html_row(r) for r in report.rules),
            "</tbody></table></body></html>",
        ]
    )
