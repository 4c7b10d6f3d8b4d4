"""Contract validation: a raw batch passes its data contract or goes to quarantine with a report.

- `rules`: the rules of a contract as plain data (rule ids, kinds, the expectation each becomes);
- `report`: the report model (one result per rule), its JSON and its HTML page;
- `checks`: the rules we compute ourselves (row count, key uniqueness, freshness, row by row);
- `suite`: the Great Expectations suite of a contract and `validate_frame` (one pandas frame);
- `execute`: `validate_dask`, partition by partition on the Dask cluster, merged into one report;
- `policy`: the failure policy as a pure function (`decide`: failed rules + policy -> what happens);
- `pii`: PII columns dropped or hashed before the `validated` zone;
- `outcome`: what validating a batch did (`ValidationOutcome`) and `ContractViolation`;
- `batch`: `validate_batch`: read a raw batch, validate it, write the report and the zones.
"""
