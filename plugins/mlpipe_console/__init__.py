"""The mlpipe console inside Airflow: evidence links, the reports pages and the MLflow webhook
receiver. Loaded by `plugins/mlpipe_plugin.py`; not scanned as plugins itself (`.airflowignore`)."""
