"""A small client of the Airflow 3 REST API (v2): trigger DAG runs and follow them.

Plain HTTP, no `airflow` import: the demo, the e2e tests and operators' scripts use it from
outside the Airflow deployment.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests

from ml.errors import MlpipeError

if TYPE_CHECKING:
    from ml.settings import Settings

log = logging.getLogger(__name__)

TERMINAL = {"success", "failed"}
# Answers that say "not now" (an API server starting, a scheduler catching up): retried with
# backoff. A 500 only for requests that can be repeated safely (not a POST that triggers a run).
RETRY_STATUS = {502, 503, 504}
IDEMPOTENT = {"GET", "PUT", "PATCH", "DELETE", "HEAD"}
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # about 15 s in all, then the error stands
PROGRESS_EVERY = 30.0  # seconds between "still running" lines while a run is followed


class AirflowAPIError(MlpipeError):
    """The API answered with an error; the message carries the method, path and answer."""


class AirflowClient:
    """With a user: a JWT from `POST /auth/token` (SimpleAuthManager with users, FAB auth
    manager); without: `GET /auth/token` (SimpleAuthManager with all admins). A stale token (401
    expired, 403 invalid) gets one new token and one retry."""

    def __init__(
        self, base_url: str, username: str | None = None, password: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.session = requests.Session()
        self._token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AirflowClient:
        """A client of `settings.airflow_api_url` as `MLPIPE_AIRFLOW_USERNAME` /
        `MLPIPE_AIRFLOW_PASSWORD` (none set: no credentials)."""
        password = settings.airflow_password
        return cls(
            settings.airflow_api_url,
            settings.airflow_username,
            password.get_secret_value() if password is not None else None,
        )

    def _authenticate(self) -> None:
        if self.username:
            resp = self.session.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=30,
            )
        else:  # SimpleAuthManager with all_admins: a GET issues a token
            resp = self.session.get(f"{self.base_url}/auth/token", timeout=30)
        if resp.status_code >= 400:
            how = f"POST as {self.username!r}" if self.username else "GET (no credentials)"
            hint = (
                "; set MLPIPE_AIRFLOW_USERNAME and MLPIPE_AIRFLOW_PASSWORD"
                if resp.status_code in (401, 403, 404, 405) and not self.username
                else ""
            )
            raise AirflowAPIError(
                f"{how} {self.base_url}/auth/token -> {resp.status_code}: {resp.text[:500]}{hint}"
            )
        self._token = resp.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self._token}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._token is None:
            self._authenticate()
        url = f"{self.base_url}/api/v2{path}"
        resp = self._send(method, url, **kwargs)
        if _stale_token(resp):
            self._authenticate()
            resp = self._send(method, url, **kwargs)
        if resp.status_code >= 400:
            raise AirflowAPIError(f"{method} {url} -> {resp.status_code}: {resp.text[:1000]}")
        return resp.json() if resp.content else None

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request, repeated with backoff while the answer is transient (`RETRY_STATUS`,
        a 500 or a lost connection for an idempotent method)."""
        for delay in (*RETRY_DELAYS, None):
            try:
                resp = self.session.request(method, url, timeout=60, **kwargs)
            except requests.ConnectionError:
                if delay is None or method not in IDEMPOTENT:
                    raise
                log.info("%s %s: no connection; again in %.0f s", method, url, delay)
            else:
                transient = resp.status_code in RETRY_STATUS or (
                    resp.status_code == 500 and method in IDEMPOTENT
                )
                if not transient or delay is None:
                    return resp
                log.info("%s %s -> %s; again in %.0f s", method, url, resp.status_code, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    # DAGs -------------------------------------------------------------------------------------

    def dag(self, dag_id: str) -> dict | None:
        try:
            return self.request("GET", f"/dags/{dag_id}")
        except AirflowAPIError as exc:
            if "-> 404" in str(exc):
                return None
            raise

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180.0) -> None:
        """Wait until the DAG processor has parsed every DAG, and make sure none is paused."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while missing:
            missing = [d for d in missing if self.dag(d) is None]
            if not missing:
                break
            if time.monotonic() > deadline:
                errors = self.request("GET", "/importErrors").get("import_errors", [])
                raise TimeoutError(
                    f"DAGs not parsed after {timeout:.0f}s: {missing}; import errors: {errors}"
                )
            time.sleep(2)
        for dag_id in dag_ids:
            if self.dag(dag_id).get("is_paused"):
                self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    # DAG runs ---------------------------------------------------------------------------------

    def trigger(
        self, dag_id: str, conf: dict | None = None, partition_key: str | None = None
    ) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if partition_key:  # a partition-aware DAG's run of one partition
            body["partition_key"] = partition_key
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        log.info("triggered %s run %s", dag_id, run["dag_run_id"])
        return run["dag_run_id"]

    def backfill(self, dag_id: str, first: str, last: str, max_active_runs: int = 4) -> dict:
        """Airflow's backfill of a scheduled DAG over the partitions dated `first`..`last`
        (ISO dates, both included): one run per partition key, the oldest first."""
        body = {
            "dag_id": dag_id,
            "from_date": f"{first}T00:00:00Z",
            "to_date": f"{last}T23:59:59Z",
            "max_active_runs": max_active_runs,
            "run_backwards": False,
            "reprocess_behavior": "none",
        }
        backfill = self.request("POST", "/backfills", json=body)
        log.info("backfill %s of %s: %s..%s", backfill.get("id"), dag_id, first, last)
        return backfill

    def runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        """The newest `limit` runs of a DAG, oldest first."""
        data = self.request(
            "GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": limit}
        )
        return sorted(data["dag_runs"], key=lambda r: r["run_after"])

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs_since(self, dag_id: str, since: datetime) -> list[dict]:
        """Runs of a DAG created at or after `since` (UTC), oldest first."""
        data = self.request(
            "GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50}
        )
        runs = [r for r in data["dag_runs"] if _parse_time(r["run_after"]) >= since]
        return sorted(runs, key=lambda r: r["run_after"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        """The run once it ended; says (log, INFO) when its state changes and every
        `PROGRESS_EVERY` seconds how long it has been running."""
        started = time.monotonic()
        deadline = started + timeout
        said, said_at = None, started
        while True:
            run = self.run(dag_id, run_id)
            now = time.monotonic()
            if run["state"] != said or now - said_at >= PROGRESS_EVERY:
                log.info("%s %s: %s (%.0f s)", dag_id, run_id, run["state"], now - started)
                said, said_at = run["state"], now
            if run["state"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s"
                )
            time.sleep(2)

    def wait_for_new_run(self, dag_id: str, since: datetime, timeout: float) -> dict:
        """Wait for the first run of `dag_id` created after `since` (e.g. started by an asset) to end."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs_since(dag_id, since)
            if runs:
                return self.wait_for_run(
                    dag_id, runs[0]["dag_run_id"], max(deadline - time.monotonic(), 1)
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no run of {dag_id} started after {since.isoformat()} within {timeout:.0f}s"
                )
            time.sleep(2)

    # Assets -----------------------------------------------------------------------------------

    def asset_id(self, uri: str) -> int:
        assets = self.request("GET", "/assets", params={"uri_pattern": uri, "limit": 100})["assets"]
        for asset in assets:
            if asset["uri"] == uri:
                return asset["id"]
        raise AirflowAPIError(f"no asset with URI {uri!r} (is the DAG that declares it parsed?)")

    def create_asset_event(self, uri: str, extra: dict | None = None) -> dict:
        """Raise an asset event by hand, e.g. to re-validate a batch: its consumers start."""
        return self.request(
            "POST", "/assets/events", json={"asset_id": self.asset_id(uri), "extra": extra or {}}
        )

    # Task instances ---------------------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        data = self.request(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        )
        return data["task_instances"]

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        entry = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": True, "stringify": False},
        )
        return entry.get("value")

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """The text of one task attempt's log."""
        records = self.task_log_records(dag_id, run_id, task_id, try_number, map_index)
        return "\n".join(r.get("event", "") for r in records)

    def task_log_records(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[dict]:
        """One task attempt's log as records (`event`, `level`, `logger`, `timestamp`, ...)."""
        data = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        content = data.get("content", "")
        if isinstance(content, list):  # structured log lines
            return [line if isinstance(line, dict) else {"event": str(line)} for line in content]
        return [{"event": line} for line in str(content).splitlines()]

    # Human in the loop ------------------------------------------------------------------------

    def awaiting_input(self, dag_id: str, run_id: str) -> list[str]:
        """Task ids of the run that wait for a person (Airflow's human-in-the-loop)."""
        return [
            t["task_id"]
            for t in self.task_instances(dag_id, run_id)
            if t["state"] in ("awaiting_input", "deferred") and t["operator"] == "ApprovalOperator"
        ]

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"
        return self.request("GET", path)

    def respond(
        self, dag_id: str, run_id: str, task_id: str, options: list[str], map_index: int = -1
    ) -> dict:
        """Answer a waiting human-in-the-loop task as this client's user (e.g. ["Approve"])."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"
        return self.request("PATCH", path, json={"chosen_options": options, "params_input": {}})


def _stale_token(resp: requests.Response) -> bool:
    """An expired token (401) or one the server no longer accepts (403 'Invalid JWT token',
    e.g. after its JWT secret changed): worth one new token."""
    return resp.status_code == 401 or (resp.status_code == 403 and "JWT" in resp.text)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
