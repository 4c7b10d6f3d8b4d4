"""A contract's source section: keys, kinds, formats and day patterns checked."""

from __future__ import annotations

from datetime import date

import pytest

from ml.sources.errors import SourceError
from ml.sources.section import check_source, expand, file_format

pytestmark = pytest.mark.unit

DAY = date(2024, 3, 1)


def test_source_sections_are_checked():
    with pytest.raises(SourceError, match=r"unknown key\(s\) \['patern'\]"):
        check_source({"kind": "drop_folder", "patern": "{date}.csv"})
    with pytest.raises(SourceError, match=r"missing key\(s\) \['pattern'\]"):
        check_source({"kind": "drop_folder", "path": "x"})
    with pytest.raises(SourceError, match="format 'xlsx'"):
        check_source({"kind": "s3", "url": "s3://b/p/", "pattern": "x", "format": "xlsx"})
    with pytest.raises(SourceError, match="must start with s3://"):
        check_source({"kind": "s3", "url": "b/p/", "pattern": "x"})
    with pytest.raises(SourceError, match=r"only \{date\}"):
        expand("{when}.csv", DAY)
    assert expand("{year}/{month}/{day}/{date}.csv", DAY) == "2024/03/01/2024-03-01.csv"
    with pytest.raises(SourceError, match="set `format`"):
        file_format({"kind": "drop_folder"}, "2024-03-01.txt")
    assert file_format({"kind": "http"}, "day.2024-03-01.jsonl") == "jsonl"
    with pytest.raises(SourceError, match="set `format`"):  # no decompression
        file_format({"kind": "http"}, "x.jsonl.gz")
