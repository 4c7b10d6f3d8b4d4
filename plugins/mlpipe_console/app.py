"""The console's web app, mounted in Airflow's API server under `PLUGIN_PREFIX` (/mlpipe).

Pages (Airflow's login: the session cookie or a bearer token, checked by Airflow's own
`get_user`): `/` recent validation results, quarantined batches, promotions and drift per
dataset; `/reports/<key>` an object of the `reports` zone (HTML report, SVG chart, JSON);
`/quarantine?ref=` a quarantined batch; `/feature-set?ref=`; `/batches?ref=...`; `/validation-reports?ref=...` (a validate chunk's
batches); `/drift?key=`.

`POST /mlflow/webhook`: MLflow's webhooks (HMAC-signed, no Airflow login). A move of `champion`
that our promotion or rollback did not already audit is audited (`ml.alias_moves`) and raises
the champion asset event, so the batch_score DAG scores with the new champion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from mlpipe_console import pages, views, webhook

log = logging.getLogger(__name__)

EventRaiser = Callable[[str, str, dict[str, Any]], Any]
# What a stored report may not do in the browser: run scripts, submit forms, reach other origins.
SANDBOX = {"Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'"}


def _airflow_user():
    """Airflow's authenticated-user dependency (imported when the app is built)."""
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


def _login_url(next_url: str) -> str:
    """Airflow's login page (its auth manager's), coming back to `next_url`."""
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # no auth manager here (outside the API server)
        return f"/auth/login?next_url={quote(next_url)}"


def _airflow_event_raiser() -> EventRaiser:
    from mlpipe_console.airflow_side import raise_asset_event

    return raise_asset_event


# long: the app and its routes declared in one place
def create_app(
    *,
    prefix: str = "/mlpipe",
    user_dependency: Callable | None = None,
    raise_event: EventRaiser | None = None,
) -> FastAPI:
    """The app; `user_dependency` and `raise_event` default to Airflow's (tests pass theirs)."""
    user = Depends(user_dependency or _airflow_user())
    raiser = raise_event or _airflow_event_raiser()
    app = FastAPI(title="mlpipe console", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def login_first(request: Request, exc: HTTPException):
        # A person's browser without a session goes to Airflow's login, then comes back.
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(_login_url(str(request.url)))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    def html(title: str, body: str) -> HTMLResponse:
        return HTMLResponse(pages.page(title, body, prefix))

    @app.get("/", dependencies=[user])
    def index() -> HTMLResponse:
        return html("Datasets: validation, quarantine, promotions, drift", views.index(prefix))

    @app.get("/reports/{key:path}", dependencies=[user])
    def report(key: str) -> Response:
        kind, content = views.report_object(key)
        if kind == "html":
            return HTMLResponse(content, headers=SANDBOX)
        if kind == "svg":
            return Response(content, media_type="image/svg+xml", headers=SANDBOX)
        return html(key, content)

    @app.get("/quarantine", dependencies=[user])
    def quarantine(ref: str) -> HTMLResponse:
        return html("Quarantined batch", views.quarantine_entry(ref, prefix))

    @app.get("/feature-set", dependencies=[user])
    def feature_set(ref: str) -> HTMLResponse:
        return html("Feature set", views.feature_set(ref))

    @app.get("/batches", dependencies=[user])
    def batches(ref: list[str] = Query(...)) -> HTMLResponse:  # noqa: B008  (FastAPI's idiom)
        return html("Batches", views.batches(ref, prefix))

    @app.get("/validation-reports", dependencies=[user])
    def validation_reports(ref: list[str] = Query(...)) -> HTMLResponse:  # noqa: B008
        return html("Validation reports", views.validation_reports(ref, prefix))

    @app.get("/drift", dependencies=[user])
    def drift(key: str) -> HTMLResponse:
        return html("Drift", views.drift_page(key, prefix))

    @app.post("/mlflow/webhook")
    async def mlflow_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            delivery = webhook.verify(views.webhook_secret(), request.headers, body)
        except webhook.WebhookRejected as exc:
            log.warning("MLflow webhook refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=401)
        status, answer = await run_in_threadpool(_as_promote, body, delivery, raiser)
        return JSONResponse(answer, status_code=status)

    def _as_promote(body: bytes, delivery: str, raise_event) -> tuple[int, dict]:
        """An alias move is audited as promotions are: under the `promote` S3 identity (its
        lock and the append-only audit log), where per-stage identities are configured."""
        from ml.identity import use_identity
        from mlpipe_console.airflow_side import stage_identity

        with use_identity(stage_identity("promote")):
            return views.alias_moved(body, delivery, raise_event)

    return app
