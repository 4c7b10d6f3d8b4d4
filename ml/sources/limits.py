"""Bounds on one input: bytes as delivered, rows, and bytes once decoded.

Defaults come from settings (`max_input_bytes`, `max_input_rows`, `max_input_decoded_bytes`;
env `MLPIPE_MAX_INPUT_*`), a contract's `limits:` overrides them. Where they are checked:

| bound | checked | outcome |
| --- | --- | --- |
| bytes | file size (drop folder), object size (S3), `Content-Length` (HTTP) before reading; bytes counted while streaming an HTTP body (after decompression) | `InputRefused` (`too_large`): nothing read, nothing kept |
| rows | parquet metadata before decoding; CSV records and JSON lines counted while parsing | `UnreadableInput` (`too_many_rows`): the bytes are kept in quarantine |
| decoded bytes | parquet metadata (uncompressed size of the row groups) before decoding | `UnreadableInput` (`too_large_decoded`) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml.settings import Settings, get_settings


@dataclass(frozen=True)
class Limits:
    """The bounds of one input."""

    max_bytes: int
    max_rows: int
    max_decoded_bytes: int

    @classmethod
    def of(
        cls, overrides: dict[str, Any] | None = None, settings: Settings | None = None
    ) -> Limits:
        """The settings' bounds, with a contract's `limits:` (`max_bytes`, `max_rows`,
        `max_decoded_bytes`) on top."""
        s = settings or get_settings()
        given = overrides or {}
        return cls(
            max_bytes=int(given.get("max_bytes", s.max_input_bytes)),
            max_rows=int(given.get("max_rows", s.max_input_rows)),
            max_decoded_bytes=int(given.get("max_decoded_bytes", s.max_input_decoded_bytes)),
        )
