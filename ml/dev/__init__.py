"""Development tooling: the local stack, the demo, the Airflow REST client, the synthetic generator. Not used in production."""
