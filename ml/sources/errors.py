"""The errors of sources: `SourceError` (a source that cannot deliver what was asked),
`SourceNotFound`, `TransientSourceError`, `UnreadableInput` (bytes kept in quarantine) and
`InputRefused` (input not taken at all: over a bound, or from a place the settings forbid)."""

from __future__ import annotations

from ml.errors import (
    BadInputError,
    ConfigurationError,
    NotFoundError,
    RefusedError,
    TransientError,
)


class SourceError(ConfigurationError):
    """A source that cannot deliver what was asked; the message names source and rule."""


class SourceNotFound(NotFoundError):
    """Nothing was delivered for the day (yet): no file, object or URL. Nothing is quarantined."""


class TransientSourceError(TransientError):
    """The source could not be reached or answered with a temporary error: worth a retry."""


class UnreadableInput(BadInputError):
    """Input bytes that cannot be read as the declared format.

    `rule` names what was broken (`empty_file`, `not_utf8`, `csv_malformed`, `csv_truncated`,
    `header_only`, `corrupt_parquet`, `bad_json_line`, ...); `data` holds the original bytes and
    `name` the original file name so that they can be kept byte for byte; `quarantine_ref` is set
    once they were (by `ml.ingest`).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        rule: str = "",
        detail: str = "",
        name: str = "",
        data: bytes = b"",
        quarantine_ref: str = "",
    ) -> None:
        super().__init__(message)
        self.source = source
        self.rule = rule
        self.detail = detail
        self.name = name
        self.data = data
        self.quarantine_ref = quarantine_ref

    def __reduce__(self):  # picklable for Airflow and Dask, without the bytes
        return (
            _rebuild_unreadable,
            (str(self), self.source, self.rule, self.detail, self.name, self.quarantine_ref),
        )


def _rebuild_unreadable(message, source, rule, detail, name, quarantine_ref) -> UnreadableInput:
    return UnreadableInput(
        message, source=source, rule=rule, detail=detail, name=name, quarantine_ref=quarantine_ref
    )


class InputRefused(RefusedError):
    """Input refused before it was taken, so nothing of it is kept and nothing is retried: more
    bytes than the bounds allow (file size, Content-Length, or counted while streaming), or a
    fetch the settings forbid (a loopback, private or reserved address, a redirect to another
    host). `rule` names the bound or policy (`too_large`, `private_address`,
    `redirect_other_host`, `redirect_scheme`, `too_many_redirects`); the input stays where it
    is, at its source."""

    def __init__(self, message: str, *, source: str = "", rule: str = "") -> None:
        super().__init__(message)
        self.source = source
        self.rule = rule

    def __reduce__(self):
        return (_rebuild_refused, (str(self), self.source, self.rule))


def _rebuild_refused(message, source, rule) -> InputRefused:
    return InputRefused(message, source=source, rule=rule)
