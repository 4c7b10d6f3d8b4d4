"""mlpipe's library: every piece of logic, importable and testable without Airflow (rooms: see the README)."""
