"""The hostile corpus: inputs nobody should have to trust, each with the outcome it must have.

Every case is one day's input of its own dataset (`case_<n>`) under the contract `CONTRACT`
(plus the case's overrides), delivered through a drop folder or the suite's HTTP server, and
run through the real ingest -> validate path. Outcomes:

- `accepted`: validated, and the validated rows are exactly `rows` (`BASE` unless given);
  validated rows that differ are `accepted_changed` (values lost or changed on the way);
- `quarantined`: held with reason `rule`: an `UnreadableInput` rule at ingest (the bytes kept
  byte for byte) or a failed contract rule (`<dataset>.<rule>`) at validation (the rows kept);
- `refused`: `InputRefused` with rule `rule` (nothing taken, nothing kept, nothing retried);
- `not_found` (`SourceNotFound`) and `transient` (`TransientSourceError`): nothing taken, the
  rows stay at the source and a later run takes them.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DAY = "2024-06-01"
NAMES = ["Ada", "Bob", "Chloé", "Dan", "Eve"]
BASE = [
    {
        "id": i + 1,
        "name": name,
        "amount": [10.5, 20.0, 3.25, 0.5, 99.99][i],
        "created_at": f"{DAY}T{8 + i:02d}:00:00+00:00",
    }
    for i, name in enumerate(NAMES)
]
HEADER = ["id", "name", "amount", "created_at"]
CONTRACT: dict[str, Any] = {
    "owner": "reliability@example.org",
    "partition": {"column": "created_at", "granularity": "day"},
    "columns": {
        "id": {"type": "int", "nullable": False, "unique": True},
        "name": {"type": "string", "nullable": True},
        "amount": {"type": "float", "nullable": True, "min": 0},
        "created_at": {"type": "timestamp", "nullable": False},
    },
    "table": {"row_count": {"min": 1}},
}


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # csv | jsonl | parquet | http
    expected: str  # accepted | quarantined | refused | not_found | transient
    rule: str = ""
    data: bytes = b""
    rows_in: int = 5
    contract: dict[str, Any] = field(default_factory=dict)  # top-level contract overrides
    source: dict[str, Any] = field(default_factory=dict)  # source-section overrides
    path: str = ""  # http: what is requested on the suite's server (default /file/<name>)
    env: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] | None = None  # accepted: the validated rows (default BASE)
    max_seconds: float | None = None  # the whole case (ingest + validate) ends within this
    note: str = ""
    make: Callable[[], bytes] | None = None  # builds `data` when the case runs (large inputs)

    def input_bytes(self) -> bytes:
        return self.make() if self.make is not None else self.data

    @property
    def ext(self) -> str:
        return {"http": "csv"}.get(self.kind, self.kind)


# --- builders ---------------------------------------------------------------------------------


def _iso_z(row: dict) -> str:
    return row["created_at"].replace("+00:00", "Z")


def csv_text(rows=BASE, header=HEADER, cells=None) -> str:
    """A CSV file's text: `cells` (lists of strings) or `rows` in `header` order."""
    buf = io.StringIO()
    import csv

    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    if cells is None:
        cells = [[_iso_z(r) if h == "created_at" else r[h] for h in header] for r in rows]
    writer.writerows(cells)
    return buf.getvalue()


def csv_bytes(**kw) -> bytes:
    return csv_text(**kw).encode()


def base_cells() -> list[list[str]]:
    return [[str(r["id"]), r["name"], repr(r["amount"]), _iso_z(r)] for r in BASE]


def with_cell(row: int, col: str, value: str, cells=None) -> list[list[str]]:
    cells = [list(c) for c in (cells or base_cells())]
    cells[row][HEADER.index(col)] = value
    return cells


def jsonl(records: list[dict] | None = None, lines: list[str] | None = None) -> bytes:
    if lines is None:
        lines = [json.dumps({**r, "created_at": _iso_z(r)}) for r in (records or BASE)]
    return ("\n".join(lines) + "\n").encode()


def parquet(table: pa.Table, **kw) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


def base_table(**replace: pa.Array) -> pa.Table:
    cols = {
        "id": pa.array([r["id"] for r in BASE], pa.int64()),
        "name": pa.array(NAMES, pa.string()),
        "amount": pa.array([r["amount"] for r in BASE], pa.float64()),
        "created_at": pa.array([r["created_at"] for r in BASE], pa.string()).cast(
            pa.timestamp("us", tz="UTC")
        ),
    }
    cols.update(replace)
    return pa.table(cols)


def bomb_parquet(rows: int = 20_000_000) -> bytes:
    """A small file (about 100 KB) whose metadata says `rows` rows: a constant column."""
    import numpy as np

    table = pa.table({"id": pa.array(np.zeros(rows, dtype=np.int8))})
    return parquet(table, compression="zstd", use_dictionary=True)


def row(i: int, **changes) -> dict:
    return {**BASE[i], **changes}


def rows_with(i: int, **changes) -> list[dict]:
    return [row(j, **changes) if j == i else BASE[j] for j in range(len(BASE))]


# --- the cases --------------------------------------------------------------------------------

GARBAGE = random.Random(13).randbytes(4096)
MANY = [{**BASE[0], "id": i + 1} for i in range(150)]
QUOTED = rows_with(1, name='Bob "the builder", jr.\nsecond line')
NA_TEXT = [row(i, name=v) for i, v in enumerate(["NA", "None", "null", "n/a", "Eve"])]
LATIN = rows_with(2, name="José")

CSV_CASES = [
    Case("csv_clean", "csv", "accepted", data=csv_bytes()),
    Case("csv_utf8_bom", "csv", "accepted", data=codecs.BOM_UTF8 + csv_bytes()),
    Case(
        "csv_latin1_declared",
        "csv",
        "accepted",
        data=csv_text(rows=LATIN).encode("latin-1"),
        source={"encoding": "latin-1"},
        rows=LATIN,
    ),
    Case(
        "csv_latin1_undeclared",
        "csv",
        "quarantined",
        "not_utf8",
        data=csv_text(rows=LATIN).encode("latin-1"),
    ),
    Case(
        "csv_utf16_undeclared", "csv", "quarantined", "not_utf8", data=csv_text().encode("utf-16")
    ),
    Case(
        "csv_utf16_declared",
        "csv",
        "accepted",
        data=csv_text().encode("utf-16"),
        source={"encoding": "utf-16"},
    ),
    Case(
        "csv_invalid_utf8_mid_file",
        "csv",
        "quarantined",
        "not_utf8",
        data=csv_bytes().replace(b"Dan", b"D\xc3\x28n"),
    ),
    Case(
        "csv_ragged_short_row",
        "csv",
        "quarantined",
        "csv_truncated",
        data=csv_bytes(cells=[*base_cells()[:4], ["5", "Eve"]]),
    ),
    Case(
        "csv_ragged_long_row",
        "csv",
        "quarantined",
        "csv_malformed",
        data=csv_bytes(cells=[*base_cells()[:4], [*base_cells()[4], "surplus"]]),
    ),
    Case(
        "csv_missing_header",
        "csv",
        "quarantined",
        "no_header",
        data=csv_text().split("\n", 1)[1].encode(),
    ),
    Case(
        "csv_duplicate_header",
        "csv",
        "quarantined",
        "duplicate_column",
        data=csv_bytes(header=["id", "name", "name", "created_at"], cells=base_cells()),
    ),
    Case(
        "csv_quotes_and_embedded_newline",
        "csv",
        "accepted",
        data=csv_bytes(rows=QUOTED),
        rows=QUOTED,
    ),
    Case(
        "csv_unterminated_quote",
        "csv",
        "quarantined",
        "csv_malformed",
        data=csv_bytes().replace(b"5,Eve", b'5,"Eve'),
    ),
    Case("csv_empty_file", "csv", "quarantined", "empty_file", data=b"", rows_in=0),
    Case(
        "csv_header_only",
        "csv",
        "quarantined",
        "header_only",
        data=b"id,name,amount,created_at\n",
        rows_in=0,
    ),
    Case("csv_binary_garbage", "csv", "quarantined", "not_utf8", data=GARBAGE, rows_in=0),
    Case(
        "csv_na_like_text_stays_text",
        "csv",
        "accepted",
        data=csv_bytes(rows=NA_TEXT),
        rows=NA_TEXT,
        note="NA, None, null, n/a are names here",
    ),
    Case(
        "csv_na_values_declared",
        "csv",
        "accepted",
        data=csv_bytes(rows=NA_TEXT),
        contract={"na_values": ["NA", "n/a"]},
        rows=[row(0, name=None), NA_TEXT[1], NA_TEXT[2], row(3, name=None), BASE[4]],
    ),
    Case(
        "csv_empty_fields_are_missing",
        "csv",
        "accepted",
        data=csv_bytes(cells=with_cell(1, "amount", "", with_cell(0, "name", ""))),
        rows=[row(0, name=None), row(1, amount=None), *BASE[2:]],
    ),
    Case(
        "csv_text_in_float_column",
        "csv",
        "quarantined",
        "amount.type",
        data=csv_bytes(cells=with_cell(2, "amount", "three")),
    ),
    Case(
        "csv_int_wider_than_64_bits",
        "csv",
        "quarantined",
        "int_overflow",
        data=csv_bytes(cells=with_cell(3, "id", str(2**70))),
    ),
    Case(
        "csv_undeclared_ssn_column",
        "csv",
        "quarantined",
        "table.extra_columns",
        data=csv_bytes(
            header=[*HEADER, "ssn"],
            cells=[[*c, f"078-05-112{i}"] for i, c in enumerate(base_cells())],
        ),
    ),
    Case(
        "csv_undeclared_column_dropped",
        "csv",
        "accepted",
        data=csv_bytes(
            header=[*HEADER, "ssn"],
            cells=[[*c, f"078-05-112{i}"] for i, c in enumerate(base_cells())],
        ),
        contract={"extra_columns": "drop"},
        note="extra_columns: drop; raw keeps ssn, validated does not",
    ),
    Case(
        "csv_case_variant_column_name",
        "csv",
        "quarantined",
        "table.extra_columns",
        data=csv_bytes(header=["id", "name", "Amount", "created_at"], cells=base_cells()),
    ),
    Case(
        "csv_whitespace_in_column_name",
        "csv",
        "quarantined",
        "table.extra_columns",
        data=csv_bytes(header=["id", " name", "amount", "created_at"], cells=base_cells()),
    ),
    Case(
        "csv_unicode_lookalike_column_name",
        "csv",
        "quarantined",
        "table.extra_columns",
        data=csv_bytes(header=["id", "n\u0430me", "amount", "created_at"], cells=base_cells()),
        note="Cyrillic a in name",
    ),
    Case(
        "csv_column_named_like_a_layout_key",
        "csv",
        "quarantined",
        "table.extra_columns",
        data=csv_bytes(header=[*HEADER, "_failed_rules"], cells=[[*c, "[]"] for c in base_cells()]),
    ),
    Case(
        "csv_duplicate_ids",
        "csv",
        "quarantined",
        "id.unique",
        data=csv_bytes(cells=with_cell(4, "id", "1")),
    ),
    Case(
        "csv_missing_required_value",
        "csv",
        "quarantined",
        "created_at.not_null",
        data=csv_bytes(cells=with_cell(4, "created_at", "")),
    ),
    Case(
        "csv_more_rows_than_the_bound",
        "csv",
        "quarantined",
        "too_many_rows",
        data=csv_bytes(rows=MANY),
        rows_in=len(MANY),
        contract={"limits": {"max_rows": 100}},
    ),
    Case(
        "csv_more_bytes_than_the_bound",
        "csv",
        "refused",
        "too_large",
        data=csv_bytes(rows=MANY),
        rows_in=len(MANY),
        contract={"limits": {"max_bytes": 1024}},
    ),
]

JSONL_CASES = [
    Case("jsonl_clean", "jsonl", "accepted", data=jsonl()),
    Case("jsonl_utf8_bom", "jsonl", "accepted", data=codecs.BOM_UTF8 + jsonl()),
    Case(
        "jsonl_nested_object",
        "jsonl",
        "quarantined",
        "nested_value",
        data=jsonl(rows_with(1, name={"first": "Bob", "last": "B"})),
    ),
    Case(
        "jsonl_list_value",
        "jsonl",
        "quarantined",
        "nested_value",
        data=jsonl(rows_with(2, amount=[1, 2])),
    ),
    Case(
        "jsonl_string_in_int_field",
        "jsonl",
        "quarantined",
        "mixed_types",
        data=jsonl(rows_with(3, id="four")),
    ),
    Case(
        "jsonl_int_wider_than_64_bits",
        "jsonl",
        "quarantined",
        "int_overflow",
        data=jsonl(rows_with(0, id=2**70)),
    ),
    Case(
        "jsonl_duplicated_key",
        "jsonl",
        "quarantined",
        "duplicate_key",
        data=jsonl(
            lines=[
                *[json.dumps({**r, "created_at": _iso_z(r)}) for r in BASE[:4]],
                '{"id": 5, "name": "Eve", "amount": 99.99, "amount": -1, '
                '"created_at": "2024-06-01T12:00:00Z"}',
            ]
        ),
    ),
    Case(
        "jsonl_null_and_na_text",
        "jsonl",
        "accepted",
        data=jsonl([row(0, name=None), row(1, name="NA"), *BASE[2:]]),
        rows=[row(0, name=None), row(1, name="NA"), *BASE[2:]],
    ),
    Case(
        "jsonl_line_not_an_object",
        "jsonl",
        "quarantined",
        "bad_json_line",
        data=jsonl(lines=[*jsonl().decode().splitlines()[:4], '[5, "Eve"]']),
    ),
    Case(
        "jsonl_truncated_line",
        "jsonl",
        "quarantined",
        "bad_json_line",
        data=jsonl().rstrip()[:-20] + b"\n",
    ),
    Case(
        "jsonl_undeclared_key",
        "jsonl",
        "quarantined",
        "table.extra_columns",
        data=jsonl(rows_with(4, ssn="078-05-1120")),
    ),
]

PARQUET_CASES = [
    Case("parquet_clean", "parquet", "accepted", data=parquet(base_table())),
    Case(
        "parquet_20m_row_bomb",
        "parquet",
        "quarantined",
        "too_many_rows",
        make=bomb_parquet,
        rows_in=20_000_000,
        max_seconds=10,
        note="a small file that decodes to 20 M rows: refused from its metadata",
    ),
    Case(
        "parquet_list_column",
        "parquet",
        "quarantined",
        "unsupported_type",
        data=parquet(base_table(amount=pa.array([[1.0], [2.0], [], [4.0], [5.0]]))),
    ),
    Case(
        "parquet_struct_column",
        "parquet",
        "quarantined",
        "unsupported_type",
        data=parquet(base_table(name=pa.array([{"first": n} for n in NAMES]))),
    ),
    Case(
        "parquet_decimal_column",
        "parquet",
        "quarantined",
        "unsupported_type",
        data=parquet(base_table(amount=pa.array([Decimal(str(r["amount"])) for r in BASE]))),
    ),
    Case(
        "parquet_truncated",
        "parquet",
        "quarantined",
        "corrupt_parquet",
        data=parquet(base_table())[:-100],
    ),
    Case(
        "parquet_binary_garbage",
        "parquet",
        "quarantined",
        "corrupt_parquet",
        data=GARBAGE,
        rows_in=0,
    ),
    Case(
        "parquet_duplicate_column_names",
        "parquet",
        "quarantined",
        "duplicate_column",
        data=parquet(
            pa.Table.from_arrays([*base_table().columns, pa.array(NAMES)], names=[*HEADER, "name"])
        ),
    ),
    Case(
        "parquet_ids_as_text",
        "parquet",
        "quarantined",
        "id.type",
        data=parquet(base_table(id=pa.array([str(r["id"]) for r in BASE]))),
    ),
    Case(
        "parquet_index_column",
        "parquet",
        "quarantined",
        "table.extra_columns",
        data=parquet(
            base_table().append_column("__index_level_0__", pa.array([10, 11, 12, 13, 14]))
        ),
    ),
]

HTTP_CASES = [
    Case("http_clean", "http", "accepted", data=csv_bytes()),
    Case(
        "http_redirect_same_host",
        "http",
        "accepted",
        data=csv_bytes(),
        path="/redirect-same/http_redirect_same_host.csv",
        note="followed; the final URL is recorded",
    ),
    Case(
        "http_redirect_other_host",
        "http",
        "refused",
        "redirect_other_host",
        data=csv_bytes(),
        path="/redirect-other/http_redirect_other_host.csv",
    ),
    Case(
        "http_redirect_to_loopback",
        "http",
        "refused",
        "private_address",
        data=csv_bytes(),
        path="/redirect-loopback/http_redirect_to_loopback.csv",
        note="a redirect host allowed, its loopback address is not",
    ),
    Case(
        "http_loopback_not_allowed",
        "http",
        "refused",
        "private_address",
        data=csv_bytes(),
        env={"MLPIPE_HTTP_ALLOWED_PRIVATE_HOSTS": "[]"},
    ),
    Case("http_redirect_loop", "http", "refused", "too_many_redirects", path="/loop/x.csv"),
    Case("http_404", "http", "not_found", "SourceNotFound", path="/missing/x.csv", rows_in=0),
    Case(
        "http_500",
        "http",
        "transient",
        "TransientSourceError",
        data=csv_bytes(),
        path="/error/http_500.csv",
    ),
    Case(
        "http_slow_trickle",
        "http",
        "transient",
        "TransientSourceError",
        data=csv_bytes(),
        path="/slow/http_slow_trickle.csv",
        source={"timeout": 1.5, "retries": 0},
        max_seconds=3.5,
        note="1 byte every 0.1 s (40 s in all) against a 1.5 s deadline",
    ),
    Case(
        "http_huge_content_length",
        "http",
        "refused",
        "too_large",
        data=csv_bytes(),
        path="/huge/http_huge_content_length.csv",
        max_seconds=3,
    ),
    Case(
        "http_stream_over_the_bound",
        "http",
        "refused",
        "too_large",
        data=csv_bytes(rows=MANY * 20),
        rows_in=len(MANY) * 20,
        path="/chunked/http_stream_over_the_bound.csv",
        contract={"limits": {"max_bytes": 64 * 1024}},
    ),
    Case(
        "http_gzip_bomb",
        "http",
        "refused",
        "too_large",
        make=lambda: gzip.compress(b"id,name,amount,created_at\n" + b"0" * 50_000_000),
        rows_in=1,
        path="/gzip/http_gzip_bomb.csv",
        contract={"limits": {"max_bytes": 1024 * 1024}},
        note="60 KB on the wire, 50 MB decoded",
    ),
]

CASES = CSV_CASES + JSONL_CASES + PARQUET_CASES + HTTP_CASES
