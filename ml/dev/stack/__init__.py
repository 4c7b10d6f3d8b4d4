"""The local stack behind `mlpipe stack up|status|down`: S3 API, MLflow, Dask, Airflow, each a
process group of its own (`lifecycle` starts and stops them; the other modules are its parts)."""
