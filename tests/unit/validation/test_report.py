"""The validation report: its JSON and its HTML page."""

from __future__ import annotations

import json

import pytest

from ml.validation.rules import rule_ids
from tests.unit.validation._data import check, plant

pytestmark = pytest.mark.unit


def test_html_report_escapes_values(flights, day):
    day.loc[3, "carrier"] = "<script>x</script>"
    report = check(day, flights)
    assert report.failed_rules == ["flights.carrier.regex"]
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert all(rule in page for rule in rule_ids(flights))
    assert "FAILED" in page


def test_report_dict_round_trips_through_json(flights, day):
    report = check(plant(day, "dep_delay", [1], 5000.0), flights)
    data = json.loads(report.to_json())
    assert data["success"] is False
    assert data["failed_rules"] == ["flights.dep_delay.max"]
    rule = next(r for r in data["rules"] if r["rule"] == "flights.dep_delay.max")
    assert set(rule) >= {
        "rule",
        "column",
        "expectation",
        "success",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_sample",
    }
    assert rule["unexpected_sample"] == [5000.0]
