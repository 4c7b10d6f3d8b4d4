"""Champion/challenger promotion on real servers (S3 API, MLflow): rule, audit, lock, rollback."""

from __future__ import annotations

import threading

import pytest

from ml import cli, registry, storage, tracking
from ml.model_versions import CHAMPION, PREVIOUS, alias_version
from ml.promotion_rule import DecisionRule, EvaluationError
from tests.integration import _models

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def versions(s3_server, dask_cluster, mlflow_server):
    fs = _models.feature_set()
    good = _models.trained(fs.ref, epochs=3)
    worse = _models.trained(fs.ref, epochs=1, learning_rate=1e-7, seed=7)
    return {"fs": fs, "good": good, "worse": worse}


def test_worse_is_refused_better_is_promoted_force_is_recorded_and_rollback_restores(
    versions, capsys
):
    name = "flights_delay_promotion"
    snapshot = versions["fs"].eval_snapshot
    v_good = _models.copy_version(versions["good"], name)
    v_worse = _models.copy_version(versions["worse"], name)

    first = registry.promote(name, v_good, snapshot)
    assert first.promoted and first.reason == "no champion yet"
    assert first.eval_snapshot_hash and first.eval_rows > 500

    second = registry.promote(name, v_worse, snapshot, DecisionRule(min_improvement=0.01))
    assert not second.promoted and "does not beat champion" in second.reason
    # Both were scored on the same pinned rows.
    assert second.eval_snapshot_hash == first.eval_snapshot_hash
    assert second.champion_metrics["roc_auc"] > second.challenger_metrics["roc_auc"]
    assert alias_version(name, CHAMPION) == v_good
    tags = tracking.client().get_model_version(name, v_worse).tags
    assert tags["promotion.promoted"] == "False"
    assert "does not beat" in tags["promotion.reason"]
    assert tags["promotion.eval_snapshot_hash"] == first.eval_snapshot_hash

    forced = registry.promote(name, v_worse, snapshot, force=True, requested_by="alice")
    assert forced.promoted and forced.forced and forced.by == "alice"
    assert forced.reason.startswith("FORCED by alice")
    assert alias_version(name, CHAMPION) == v_worse
    assert alias_version(name, PREVIOUS) == v_good

    assert cli.main(["model", "rollback", name, "--by", "bob", "--no-trigger"]) == 0
    assert f"champion {v_worse} -> {v_good}" in capsys.readouterr().out
    assert alias_version(name, CHAMPION) == v_good
    assert alias_version(name, PREVIOUS) is None  # v_good had no predecessor
    with pytest.raises(registry.RegistryError, match="no 'previous' alias"):
        registry.rollback(name)

    log = registry.history(name)
    assert [(r["action"], r["version"]) for r in log] == [
        ("promote", v_good),
        ("refuse", v_worse),
        ("promote", v_worse),
        ("rollback", v_good),
    ]
    assert log[-1]["by"] == "bob" and log[-1]["rolled_back"] == v_worse
    # Append-only: each record is its own object and none was rewritten.
    assert len({r["audit_record"] for r in log}) == 4
    assert storage.read_json(first.audit_record)["action"] == "promote"
    # The record as stored: what the decision said, the rule with the force asked for.
    stored = storage.read_json(forced.audit_record)
    assert stored == {**forced.audit_fields(), "model_name": name, "at": stored["at"]}
    assert stored["rule"]["force"] is True and stored["rule"]["requested_by"] == "alice"
    assert cli.main(["model", "history", name]) == 0
    out = capsys.readouterr().out
    assert "refused" in out and "(forced)" in out and "ROLLBACK" in out
    assert f"champion={v_good}" in out


def test_a_champion_that_cannot_be_evaluated_refuses_the_promotion_unless_forced(versions):
    """Fail closed: the champion's model cannot be loaded (its artifacts are not there), so the
    comparison cannot be made: the promotion is refused, audited and fails the task; a person
    may force it, recorded as forced."""
    name = "flights_delay_unevaluable"
    snapshot = versions["fs"].eval_snapshot
    v_good = _models.copy_version(versions["good"], name)
    client = tracking.client()
    broken = str(client.create_model_version(name, source="s3://mlflow/no-such-model").version)
    client.set_registered_model_alias(name, CHAMPION, broken)

    with pytest.raises(EvaluationError, match=f"champion version {broken} could not be evaluated"):
        registry.promote(name, v_good, snapshot)
    assert alias_version(name, CHAMPION) == broken
    refused = registry.history(name)[-1]
    assert refused["promoted"] is False and refused["reason"].startswith("refused: champion")
    tags = client.get_model_version(name, v_good).tags
    assert tags["promotion.promoted"] == "False"

    forced = registry.promote(name, v_good, snapshot, force=True, requested_by="alice")
    assert forced.promoted and forced.forced and "could not be evaluated" in forced.reason
    assert alias_version(name, CHAMPION) == v_good
    assert alias_version(name, PREVIOUS) == broken


def test_two_concurrent_promotions_end_in_one_champion_and_two_records(versions):
    name = "flights_delay_concurrent"
    snapshot = versions["fs"].eval_snapshot
    # Two versions with the same weights: whichever goes second cannot beat the first.
    a = _models.copy_version(versions["good"], name)
    b = _models.copy_version(versions["good"], name)
    results, errors = {}, []
    start = threading.Barrier(2)

    def run(version: str) -> None:
        try:
            start.wait()
            results[version] = registry.promote(name, version, snapshot)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    promoted = [v for v, d in results.items() if d.promoted]
    assert len(promoted) == 1, results
    assert alias_version(name, CHAMPION) == promoted[0]
    log = registry.history(name)
    assert len(log) == 2
    assert sorted(r["action"] for r in log) == ["promote", "refuse"]
    assert log[1]["previous_champion"] == promoted[0]  # the second saw the first's result
