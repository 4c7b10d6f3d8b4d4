"""`validate_batch`: a committed raw batch validated, its report written, its rows sent on or held.

Rows in `validated` + rows in `quarantine` == rows in `raw`. Quarantine keeps rows as they came
(PII included: a restricted zone, so a person can inspect and release them; see
`ml.quarantine`); `validated` gets them with PII dropped or hashed (`ml.validation.pii`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ml import commit, storage
from ml.cluster import dask_client
from ml.contracts import Contract
from ml.errors import BadInputError, MlpipeError, TransientError
from ml.settings import Settings, get_settings
from ml.validation.checks import row_failures
from ml.validation.execute import validate_dask
from ml.validation.outcome import ContractViolation, ValidationOutcome
from ml.validation.pii import apply_pii, pii_salt, to_validated
from ml.validation.policy import (
    BATCH_QUARANTINED,
    PASSED,
    ROWS_QUARANTINED,
    Decision,
    counts_rows,
    decide,
)
from ml.validation.report import ValidationReport, report_key
from ml.validation.rules import FAILED_RULES, as_contract, kinds_of, undeclared
from ml.validation.small import SMALL_ROWS, signature, validate_frames
from ml.validation.suite import validate_frame

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DASK_MIN_ROWS = 1_000_000  # batches with more rows are validated on the Dask cluster


def validate_batch(
    ref: str,
    contract: Contract | str | None = None,
    *,
    settings: Settings | None = None,
    use_dask: bool | None = None,
    report: ValidationReport | None = None,
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

    Idempotent: a batch already validated under the same contract hash is not validated again
    (`earlier_outcome`), and a batch a person released stays released whatever the contract.
    `report`: the batch's report when it was computed already (`validate_batches`).
    """
    s = settings or get_settings()
    manifest = _raw_manifest(ref, s)
    contract = as_contract(contract if contract is not None else manifest.dataset)
    if contract.dataset != manifest.dataset:
        raise BadInputError(
            f"{ref}: batch of dataset {manifest.dataset!r} checked against contract "
            f"{contract.dataset!r}"
        )
    salt = pii_salt(contract, s)  # fail before anything is written
    earlier = earlier_outcome(manifest, contract, s)
    if earlier is not None:
        return earlier
    if report is None or report.batch_ref != manifest.ref:
        report = _validate(manifest, contract, use_dask, s)
    report_url, html_url = _write_report(report, manifest, s)
    batch = _Batch(manifest, contract, salt, report, report_url, html_url, s)

    kinds = kinds_of(contract, report.failed_rules)
    failures = _row_failures(manifest, contract, s) if counts_rows(kinds, contract.policy) else None
    bad_rows = None if failures is None else sum(len(f) for f in failures)
    decision = decide(kinds, contract.policy, rows=manifest.rows, bad_rows=bad_rows)
    if decision.status == PASSED:
        return _pass(batch, decision)
    if decision.status == ROWS_QUARANTINED:
        return _split_rows(batch, decision, failures or [])
    return _quarantine_batch(batch, decision)


def validate_batches(
    refs: list[str], contract: Contract | str, *, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """Validate several raw batches in one task (a chunk of a history load), each on its own as
    `validate_batch` does: one that breaks its contract is quarantined by its policy and the
    others go on. Returns one `{"ref", "validated" | "held" | "error"}` per batch; when a batch
    was held back whole under `on_failure: fail`, `ContractViolation` is raised once all of
    them were taken (the task fails, naming each held batch, and is not retried).

    A batch that could not be validated for a reason a retry may cure (S3, a lost Dask worker,
    anything unknown) is raised once the chunk is through: Airflow retries the chunk, and the
    batches already validated are no-ops then (`earlier_outcome`). Lasting errors (bad input,
    configuration) are returned; the run's verdict names them."""
    contract = as_contract(contract)
    s = settings or get_settings()
    reports = _reports_together(refs, contract, s)
    results: list[dict[str, Any]] = []
    retry: Exception | None = None
    held: list[ContractViolation] = []
    for ref in refs:
        try:
            outcome = validate_batch(ref, contract, settings=s, report=reports.get(ref))
            results.append({"ref": ref, "validated": outcome.manifest.ref})
        except ContractViolation as exc:
            results.append({"ref": ref, "held": str(exc)[:500]})
            held.append(exc)
        except MlpipeError as exc:
            log.error("%s: %s: %s", ref, type(exc).__name__, exc)
            results.append({"ref": ref, "error": f"{type(exc).__name__}: {exc}"[:500]})
            if isinstance(exc, TransientError):
                retry = retry or exc
        except Exception as exc:
            log.exception("%s could not be validated", ref)
            results.append({"ref": ref, "error": f"{type(exc).__name__}: {exc}"[:500]})
            retry = retry or exc
    if retry is not None:
        raise retry
    if held:  # `on_failure: fail`: the task fails (no retry), naming every batch held back
        if len(held) == 1:
            raise held[0]
        raise ContractViolation("; ".join(str(e) for e in held)[:4000], ref=held[0].ref)
    return results


def _reports_together(refs: list[str], contract: Contract, s: Settings) -> dict[str, Any]:
    """The reports of the small batches among `refs`, computed by one GX run per group of
    batches with the same columns and dtypes (`ml.validation.small`); what could not be read
    here is validated one by one. A batch validated before keeps its earlier outcome
    (`validate_batch` checks; its report here is not used)."""
    frames: dict[tuple, list[tuple[str, pd.DataFrame]]] = {}
    for ref in refs:
        try:
            manifest = _raw_manifest(ref, s)
            if manifest.rows > SMALL_ROWS:
                continue
            df = storage.read_batch(manifest, s)
        except Exception:
            log.debug("%s: not validated with the others", ref, exc_info=True)
            continue
        frames.setdefault(signature(df), []).append((manifest.ref, df))
    reports = {}
    for group in frames.values():
        if len(group) > 1:
            done = validate_frames([df for _, df in group], contract, [r for r, _ in group])
            reports.update({r.batch_ref: r for r in done})
    return reports


def earlier_outcome(
    manifest: storage.Manifest, contract: Contract, s: Settings
) -> ValidationOutcome | None:
    """What validating this raw batch did before, when that stands: a release by a person
    (whatever the contract now), or a validation under the same contract hash. None: validate.

    An earlier whole-batch quarantine under `on_failure: fail` is raised again as
    `ContractViolation` (same batch, same rules); nothing is written either way."""
    fs = storage.filesystem(s)
    kept, held = (
        commit.read_committed(fs, storage.ref_in_zone(manifest.ref, zone, s).removeprefix("s3://"))
        for zone in ("validated", "quarantine")
    )
    done = kept or held
    if done is None:
        return None
    released = bool(kept and kept.extra.get("released_by"))
    if not released and done.extra.get("contract_hash") != contract.hash:
        return None  # validated under another contract: validate again, replacing it
    status = PASSED if kept and not held else ROWS_QUARANTINED if kept else BATCH_QUARANTINED
    if released:
        status = PASSED
    report_url = str(done.extra.get("validation_report", ""))
    report = _stored_report(report_url, done, manifest, status, s)
    outcome = ValidationOutcome(
        ref=manifest.ref,
        dataset=manifest.dataset,
        status=status,
        report=report,
        report_url=report_url,
        report_html_url=str(done.extra.get("validation_report_html", "")),
        manifest=kept or held,
        quarantine=held,
        reason=str((held.extra if held else {}).get("quarantine_reason", "")),
        rows_validated=kept.rows if kept else 0,
        rows_quarantined=0 if released or held is None else held.rows,
    )
    log.info(
        "%s was %s before (contract %s): %s, nothing done again",
        manifest.ref,
        "released by a person" if released else "validated",
        done.extra.get("contract_hash"),
        status,
    )
    if status == BATCH_QUARANTINED and contract.policy.on_failure != "warn":
        raise ContractViolation(
            f"batch {manifest.ref} broke contract {contract.dataset} ({contract.hash}) when it "
            f"was validated before: {report.failure_summary()}; quarantined at {held.ref}; "
            f"report: {report_url}",
            ref=manifest.ref,
            report=report,
            report_url=report_url,
            outcome=outcome,
        )
    return outcome


def _stored_report(
    url: str, done: storage.Manifest, raw: storage.Manifest, status: str, s: Settings
) -> ValidationReport:
    """The report an earlier validation wrote; a bare one when it was not kept."""
    names = set(ValidationReport.__dataclass_fields__)
    try:
        data = storage.read_json(url, s)
        return ValidationReport(**{k: v for k, v in data.items() if k in names})
    except (OSError, ValueError):  # no report kept (e.g. an older batch)
        return ValidationReport(
            dataset=raw.dataset,
            contract_hash=str(done.extra.get("contract_hash", "")),
            success=status != BATCH_QUARANTINED,
            rows=raw.rows,
            rules=[],
            batch_ref=raw.ref,
        )


def _raw_manifest(ref: str, s: Settings) -> storage.Manifest:
    manifest = storage.read_manifest(ref, s)
    if manifest.zone != "raw":
        raise BadInputError(
            f"{ref}: only raw batches are validated, this one is in {manifest.zone!r}"
        )
    return manifest


def _validate(
    manifest: storage.Manifest, contract: Contract, use_dask: bool | None, s: Settings
) -> ValidationReport:
    """The batch's report: on the Dask cluster when it is large (or `use_dask`), else here."""
    if use_dask is None:
        use_dask = manifest.rows > DASK_MIN_ROWS
    if use_dask:
        with dask_client(s):
            ddf = storage.read_dask([manifest], s)
            return validate_dask(ddf, contract, batch_ref=manifest.ref)
    df = storage.read_batch(manifest, s)
    return validate_frame(df, contract, batch_ref=manifest.ref)


def _write_report(
    report: ValidationReport, manifest: storage.Manifest, s: Settings
) -> tuple[str, str]:
    """The report to the `reports` zone as JSON and HTML: (JSON URL, HTML URL)."""
    key = report_key(manifest.dataset, manifest.partition, manifest.batch_id)
    report_url = storage.write_json("reports", f"{key}.json", report.to_dict(), s)
    html_path = f"{s.bucket('reports')}/{key}.html"
    storage.filesystem(s).pipe_file(
        html_path, report.to_html().encode(), ContentType="text/html; charset=utf-8"
    )
    return report_url, f"s3://{html_path}"


def _row_failures(manifest: storage.Manifest, contract: Contract, s: Settings) -> list[pd.Series]:
    """The rules each bad row broke, part by part (index = row position in its part; small:
    at most max_bad_fraction of rows are kept)."""
    failures = []
    for df in storage.read_parts(manifest, s):
        failed = row_failures(df, contract).reset_index(drop=True)
        failures.append(failed[failed.map(bool).to_numpy(dtype=bool)])
    return failures


@dataclass(frozen=True)
class _Batch:
    """A raw batch once validated and its report written: what sending its rows on needs."""

    manifest: storage.Manifest
    contract: Contract
    salt: bytes | None
    report: ValidationReport
    report_url: str
    report_html_url: str
    settings: Settings

    def extra(self) -> dict[str, Any]:
        """What every manifest written for this batch says about its validation."""
        extra = {
            "validation_report": self.report_url,
            "validation_report_html": self.report_html_url,
            "contract_hash": self.contract.hash,
            "validation_passed": self.report.success,
        }
        if not self.report.success:
            extra["failed_rules"] = self.report.failed_rules
        return extra

    def pii_extra(self) -> dict[str, Any]:
        """What a manifest in `validated` says about the PII it dropped or hashed and the
        undeclared columns it left out (`extra_columns: drop`)."""
        extra: dict[str, Any] = {"pii": dict(self.contract.pii)} if self.contract.pii else {}
        dropped = undeclared(self.contract, self.manifest.schema)
        if dropped:
            extra["dropped_columns"] = dropped
        return extra

    def outcome(self, decision: Decision, target: storage.Manifest, **kw: Any) -> ValidationOutcome:
        return ValidationOutcome(
            ref=self.manifest.ref,
            dataset=self.manifest.dataset,
            status=decision.status,
            report=self.report,
            report_url=self.report_url,
            report_html_url=self.report_html_url,
            manifest=target,
            reason=decision.reason,
            **kw,
        )


def _pass(b: _Batch, decision: Decision) -> ValidationOutcome:
    m, report = b.manifest, b.report
    target = to_validated(m, b.contract, b.salt, {**b.extra(), **b.pii_extra()}, b.settings)
    log.info(
        "%s passed contract %s (%s rows, %s rules, %.2fs): %s",
        m.ref,
        b.contract.dataset,
        report.rows,
        len(report.rules),
        report.duration_s,
        target.ref,
    )
    return b.outcome(decision, target, rows_validated=m.rows)


def _quarantine_batch(b: _Batch, decision: Decision) -> ValidationOutcome:
    """The whole batch, as it came, to `quarantine` with `_report.json`; raises
    `ContractViolation` unless the policy says `on_failure: warn`."""
    m = b.manifest
    target = storage.copy_batch(
        m,
        "quarantine",
        extra={**b.extra(), "quarantine_reason": decision.reason},
        files={"_report.json": b.report.to_json().encode()},
        settings=b.settings,
    )
    outcome = b.outcome(decision, target, quarantine=target, rows_quarantined=m.rows)
    message = (
        f"batch {m.ref} broke contract {b.contract.dataset} ({b.contract.hash}): "
        f"{b.report.failure_summary()}; {decision.reason}; whole batch quarantined at "
        f"{target.ref}; report: {b.report_url}"
    )
    if not decision.fail:
        log.warning("%s (on_failure: warn, the task goes on)", message)
        return outcome
    log.warning("%s", message)
    raise ContractViolation(
        message, ref=m.ref, report=b.report, report_url=b.report_url, outcome=outcome
    )


def _split_rows(b: _Batch, decision: Decision, failures: list[pd.Series]) -> ValidationOutcome:
    """Good rows to `validated` (PII applied), bad rows as they were (plus `_failed_rules`) to
    `quarantine`, part by part in one more read of the batch; both under the raw batch's id.
    `failures` holds, per part, the failed rules of its bad rows (index = row position)."""
    m, s = b.manifest, b.settings
    bad = sum(len(f) for f in failures)
    good_rows = m.rows - bad
    held_ref = storage.ref_in_zone(m.ref, "quarantine", s)
    kept_ref = storage.ref_in_zone(m.ref, "validated", s)
    held_writer, kept_writer = _write_split(b, failures)
    held = held_writer.commit(
        extra={
            **b.extra(),
            "quarantine_reason": decision.reason,
            "quarantined_rows": bad,
            "validated_rows": good_rows,
            "validated": kept_ref,
            "max_bad_fraction": b.contract.policy.max_bad_fraction,
        },
        files={"_report.json": b.report.to_json().encode()},
    )
    kept = kept_writer.commit(
        extra={**b.extra(), **b.pii_extra(), "quarantined_rows": bad, "quarantine": held_ref}
    )
    log.warning(
        "batch %s: %s of %s rows broke %s (within max_bad_fraction %g): quarantined at %s, "
        "%s good rows validated at %s; report: %s",
        m.ref,
        bad,
        m.rows,
        b.report.failure_summary(),
        b.contract.policy.max_bad_fraction,
        held.ref,
        good_rows,
        kept.ref,
        b.report_url,
    )
    return b.outcome(
        decision, kept, quarantine=held, rows_validated=good_rows, rows_quarantined=bad
    )


def _write_split(
    b: _Batch, failures: list[pd.Series]
) -> tuple[storage.PartsWriter, storage.PartsWriter]:
    """Each part's bad rows to a `quarantine` writer, its good rows to a `validated` one."""
    m, s = b.manifest, b.settings
    held_writer = storage.PartsWriter("quarantine", m, settings=s)
    kept_writer = storage.PartsWriter("validated", m, settings=s)
    for df, failed in zip(storage.read_parts(m, s), failures, strict=True):
        is_bad = np.zeros(len(df), dtype=bool)
        is_bad[failed.index.to_numpy()] = True
        held = df[is_bad].reset_index(drop=True)
        held[FAILED_RULES] = failed.reset_index(drop=True)
        held_writer.add(held)
        kept_writer.add(apply_pii(df[~is_bad].reset_index(drop=True), b.contract, b.salt))
    return held_writer, kept_writer
