"""A person in a real browser: Debian's Chromium, driven by Playwright, on the secure local stack
(real Airflow users and passwords). The operator logs in, fills a trigger form with non-default
Params, approves the promotion it asks for, follows the task's extra link to the evidence, and
sees a plain alias move in MLflow start a scoring run. Each step leaves a screenshot in
`test-artifacts/browser/` (`MLPIPE_TEST_ARTIFACTS` elsewhere)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ml import registry, tracking
from ml.dev.airflow_api import AirflowClient
from ml.dev.stack import auth, secure_s3
from ml.identity import use_identity
from ml.model_versions import CHAMPION, alias_version

pytestmark = pytest.mark.e2e

DATASET, MODEL = "flights_delay_class", "flights_delay_class"  # its contract wants approval
PROMOTE, SCORE = f"promote_{DATASET}", f"batch_score_{DATASET}"
USER = "operator"  # SimpleAuthManager role `op`: triggers runs and answers required actions
REPO = Path(__file__).resolve().parents[3]
# One DAG of each kind: its trigger form is valid with the defaults as they are.
ONE_OF_EACH_KIND = [
    "ingest_flights",
    "validate_flights",
    "preprocess_flights",
    "train_flights",
    "promote_flights",
    "batch_score_flights",
    "rollback_flights",
    "quarantine_flights",
]


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("MLPIPE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def page(secure_stack, shots) -> Iterator:
    """A Chromium tab, logged in to Airflow as the operator (screenshots 01 and 02)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make test` installs it (make tools)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(30_000)
        _login(tab, secure_stack, shots)
        yield tab
        browser.close()


@pytest.fixture(autouse=True)
def as_admin(secure_stack) -> Iterator:
    """This process reads storage (audit records) with the admin's keys: its own have none."""
    with use_identity(secure_s3.admin_identity(secure_stack)):
        yield


@pytest.fixture(scope="module")
def champion(chains) -> str:
    """The dataset's chain through the REST API (its promotion approved there): version 1."""
    runs = chains[DATASET]
    assert {r["state"] for r in runs.values()} == {"success"}, runs
    return alias_version(MODEL, CHAMPION)


def _user_client(stack) -> AirflowClient:
    return AirflowClient(stack.airflow_api_url, USER, auth.airflow_passwords(stack)[USER])


def _dialog(page):
    return page.locator("[role=dialog][data-scope=dialog][data-state=open]")


def _login(page, stack, shots: Path) -> None:
    page.goto(stack.airflow_api_url + "/", wait_until="networkidle")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", auth.airflow_passwords(stack)[USER])
    page.screenshot(path=shots / "01-login.png")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "login" not in url)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=shots / "02-logged-in.png")


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(1)
    return found


def _copy_of(version: str) -> str:
    """A second version with the same weights (a challenger that needs forcing)."""
    client = tracking.client()
    copy = client.copy_model_version(f"models:/{MODEL}/{version}", MODEL)
    for key, value in client.get_model_version(MODEL, version).tags.items():
        if not key.startswith("promotion."):
            client.set_model_version_tag(MODEL, copy.version, key, value)
    return str(copy.version)


# long: one person's session, step by step, each with its screenshot
def test_a_person_triggers_approves_and_follows_the_evidence(secure_stack, champion, page, shots):
    base = secure_stack.airflow_api_url
    api = _user_client(secure_stack)

    # The trigger form, filled with non-default Params: a version, and force.
    second = _copy_of(champion)
    since = datetime.now(UTC)
    page.goto(f"{base}/dags/{PROMOTE}", wait_until="networkidle")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = _dialog(page)
    dialog.get_by_role("button", name="Challenger").click()
    dialog.locator("input[name=element_model_version]").fill(second)
    page.screenshot(path=shots / "03-trigger-form-version.png")
    dialog.get_by_role("button", name="Override (recorded)").click()
    dialog.locator("label[id='switch:element_force']").click()
    page.screenshot(path=shots / "03-trigger-form-force.png")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    run_id = _wait(
        lambda: next((r["dag_run_id"] for r in api.runs_since(PROMOTE, since)), None),
        60,
        "the triggered promote run",
    )

    # The promotion waits for a person; the operator approves it on the task's page.
    _wait(lambda: api.awaiting_input(PROMOTE, run_id), 300, "the approval request")
    page.goto(f"{base}/dags/{PROMOTE}/runs/{run_id}/tasks/approve/required_actions")
    page.get_by_text(f"Promote {MODEL} version {second}?").first.wait_for()
    page.get_by_text("FORCED by operator").first.wait_for()  # the decision, who asked
    page.screenshot(path=shots / "04-approval.png")
    page.get_by_role("button", name="Approve", exact=True).click()
    run = api.wait_for_run(PROMOTE, run_id, 300)
    assert run["state"] == "success"
    assert alias_version(MODEL, CHAMPION) == second
    record = registry.history(MODEL)[-1]
    assert (record["version"], record["by"], record["approved_by"]) == (second, USER, USER)

    # The promote task links to its evidence: the promotion record, rendered by the plugin.
    page.goto(f"{base}/dags/{PROMOTE}/runs/{run_id}/tasks/promote/details")
    link = page.get_by_role("link", name="Promotion record")
    link.wait_for()
    page.screenshot(path=shots / "05-extra-links.png")
    link.click()
    page.wait_for_load_state("networkidle")
    assert "/mlpipe/reports/promotions/" in page.url
    text = page.inner_text("body")
    assert '"approved_by": "operator"' in text and f'"version": "{second}"' in text, text[:2000]
    page.screenshot(path=shots / "06-promotion-record.png")

    # A plain alias move in MLflow (not our promotion): audited, and scoring runs with it.
    moved_at = datetime.now(UTC)
    tracking.client().set_registered_model_alias(MODEL, CHAMPION, champion)
    scoring = _wait(lambda: api.runs_since(SCORE, moved_at), 60, "the scoring run of the move")
    assert scoring[0]["run_type"] == "asset_triggered"
    assert api.wait_for_run(SCORE, scoring[0]["dag_run_id"], 300)["state"] == "success"
    assert registry.history(MODEL)[-1]["action"] == "alias_set"
    page.goto(f"{base}/dags/{SCORE}/runs", wait_until="networkidle")
    page.get_by_text(scoring[0]["dag_run_id"][:30]).first.wait_for()
    page.screenshot(path=shots / "07-scoring-run.png")


def test_every_kind_of_dag_triggers_with_its_defaults(secure_stack, page, shots):
    """The trigger form of one DAG of each kind is valid as it opens (no required field left
    empty, no default its own schema refuses): the Trigger button is enabled."""
    for dag_id in ONE_OF_EACH_KIND:
        page.goto(f"{secure_stack.airflow_api_url}/dags/{dag_id}", wait_until="networkidle")
        page.get_by_role("button", name="Trigger Dag").click()
        dialog = _dialog(page)
        dialog.wait_for()
        page.wait_for_timeout(1500)  # the form validates its fields once rendered
        button = dialog.get_by_role("button", name="Trigger", exact=True)
        if dag_id == "train_flights":
            page.screenshot(path=shots / "08-defaults-train-form.png")
        assert button.is_enabled(), f"{dag_id}: its trigger form refuses its own defaults"
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
