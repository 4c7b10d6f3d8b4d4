"""The mlpipe Airflow plugin: every task links to its evidence, and the console app (reports
pages, MLflow webhook receiver) is mounted in the API server under /mlpipe.

Loaded by Airflow in every process, so it imports nothing heavy: the links read the task's XCom
and build URLs (`mlpipe_console.links`); the app is built on its first request (`LazyApp`).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from mlpipe_console import links

from ml.settings import PLUGIN_PREFIX

# Our DAG ids are `<kind>_<dataset>` (dags/*.py).
DAG_KINDS = ("ingest_", "validate_", "preprocess_", "train_", "promote_", "batch_score_")
_CACHE_S = 5.0  # one task view asks for every link: read the XCom once
_cache: dict[tuple, tuple[float, dict[str, str]]] = {}


def prefix() -> str:
    """The console's URL path: Airflow's base URL path (if any) + /mlpipe."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    base = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{base}{PLUGIN_PREFIX}"


def _dataset(dag_id: str) -> str | None:
    return next((dag_id[len(k) :] for k in DAG_KINDS if dag_id.startswith(k)), None)


def _model_name(dataset: str) -> str | None:
    from ml.contracts import load_contract

    try:
        return load_contract(dataset).model_name
    except Exception:
        return None


def task_links(dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, str]:
    """Every evidence link of one task instance (cached a few seconds)."""
    key = (dag_id, run_id, task_id, map_index)
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < _CACHE_S:
        return hit[1]
    dataset = _dataset(dag_id)
    found: dict[str, str] = {}
    if dataset is not None:
        from mlpipe_console.airflow_side import task_return_value

        from ml.settings import get_settings

        s = get_settings()
        found = links.evidence_links(
            task_return_value(dag_id, run_id, task_id, map_index),
            buckets={z: s.bucket(z) for z in links.ZONES},
            prefix=prefix(),
            mlflow_ui=s.mlflow_ui,
            model_name=_model_name(dataset),
        )
    if len(_cache) > 1000:
        _cache.clear()
    _cache[key] = (time.monotonic(), found)
    return found


class _EvidenceLink(BaseOperatorLink):
    """A link a task has when its return value names that kind of evidence ("" hides it)."""

    name = ""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return task_links(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index).get(
            self.name, ""
        )


EVIDENCE_LINKS = [
    type(f"Evidence{i}Link", (_EvidenceLink,), {"name": name, "__module__": __name__})()
    for i, name in enumerate(links.NAMES)
]


class LazyApp:
    """An ASGI app built on its first request (FastAPI, storage and MLflow load then, in the API
    server only)."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            from mlpipe_console.app import create_app

            self._app = create_app(prefix=prefix())
        await self._app(scope, receive, send)


class MlpipePlugin(AirflowPlugin):
    name = "mlpipe"
    global_operator_extra_links: ClassVar[list] = EVIDENCE_LINKS
    # In Airflow's navigation: the console, shown inside the Airflow UI.
    external_views: ClassVar[list] = [
        {
            "name": "mlpipe: reports & audit",
            "href": f"{PLUGIN_PREFIX}/",
            "destination": "nav",
            "url_route": "mlpipe",
            "category": "Browse",
        }
    ]
    fastapi_apps: ClassVar[list] = [
        {"app": LazyApp(), "url_prefix": PLUGIN_PREFIX, "name": "mlpipe console"}
    ]
