"""MLflow run and tag helpers, against a stand-in client (no server)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ml import tracking

pytestmark = pytest.mark.unit


class FakeClient:
    def __init__(self, runs=()):
        self.runs, self.created, self.batches, self.tags = list(runs), [], [], {}

    def search_runs(self, experiment_ids, filter_string, max_results):
        self.filter = filter_string
        return self.runs

    def create_run(self, experiment_id, run_name, tags):
        self.created.append((experiment_id, run_name, tags))
        return SimpleNamespace(info=SimpleNamespace(run_id="new"))

    def log_batch(self, run_id, metrics):
        self.batches.append((run_id, metrics))

    def set_model_version_tag(self, name, version, key, value):
        self.tags[(name, version, key)] = value


def test_a_run_is_found_by_its_tag_or_created_with_it():
    client = FakeClient()
    assert tracking.find_or_create_run(client, "1", "k", "abc", "train-v", {"a": "b"}) == "new"
    assert client.filter == "tags.k = 'abc'"
    assert client.created == [("1", "train-v", {"a": "b", "k": "abc"})]
    found = FakeClient([SimpleNamespace(info=SimpleNamespace(run_id="old"))])
    assert tracking.find_or_create_run(found, "1", "k", "abc", "train-v", {}) == "old"
    assert found.created == []


def test_a_step_is_logged_once():
    client, done = FakeClient(), {0}
    tracking.log_step(client, "r", {"epoch": 0, "loss": 1.0}, done)
    tracking.log_step(client, "r", {"epoch": 1, "loss": 0.5, "auc": 0.7}, done)
    tracking.log_step(client, "r", {"epoch": 1, "loss": 0.5, "auc": 0.7}, done)
    assert len(client.batches) == 1 and done == {0, 1}
    metrics = client.batches[0][1]
    assert {(m.key, m.value, m.step) for m in metrics} == {("loss", 0.5, 1), ("auc", 0.7, 1)}


def test_version_tags_are_set_one_by_one():
    client = FakeClient()
    tracking.set_version_tags(client, "m", "2", {"a": "1", "b": "2"})
    assert client.tags == {("m", "2", "a"): "1", ("m", "2", "b"): "2"}
