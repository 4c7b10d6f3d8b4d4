-- Databases and roles of the metadata store: `airflow` (Airflow metadata + Celery results) and
-- `mlflow` (MLflow tracking and model registry), each owned by its own login role.
--
-- Run once by infra/postgres/init.sh (from /docker-entrypoint-initdb.d), as the superuser, on an
-- empty data directory only. Needs psql 15+ (\getenv): the passwords come from the environment
-- init.sh gives psql (AIRFLOW_DB_PASSWORD, MLFLOW_DB_PASSWORD, read from Docker secrets) and are
-- never written in this file. To change one later:
--   docker-compose exec postgres psql -U postgres -c "ALTER ROLE airflow PASSWORD '...'"

\set ON_ERROR_STOP on

\getenv airflow_db_password AIRFLOW_DB_PASSWORD
\getenv mlflow_db_password MLFLOW_DB_PASSWORD

\if :{?airflow_db_password}
\else
    \warn 'AIRFLOW_DB_PASSWORD is not set in the postgres container'
    DO $$ BEGIN RAISE EXCEPTION 'AIRFLOW_DB_PASSWORD is required'; END $$;
\endif
\if :{?mlflow_db_password}
\else
    \warn 'MLFLOW_DB_PASSWORD is not set in the postgres container'
    DO $$ BEGIN RAISE EXCEPTION 'MLFLOW_DB_PASSWORD is required'; END $$;
\endif

CREATE ROLE airflow LOGIN PASSWORD :'airflow_db_password';
CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8' TEMPLATE template0;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_db_password';
CREATE DATABASE mlflow OWNER mlflow ENCODING 'UTF8' TEMPLATE template0;

-- Each role reaches its own database only (owners keep CONNECT; PUBLIC loses it).
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
