"""Reliability: hostile inputs (and faults) thrown at the real ingest -> validate path, each case
recorded in a results table that the README's reliability section is generated from."""
