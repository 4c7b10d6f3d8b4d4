"""MLflow run and tag helpers, against a stand-in client (no server)."""

from __future__ import annotations

import tempfile
from pathlib import Path
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


# --- loading a model: refused unless it is models-from-code with mlpipe's entry file -----------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small model saved as training logs it (`tests/unit/training/test_model.py::save`)."""
    from ml.training.loader import synthetic_features
    from ml.training.network import network_from_config
    from ml.training.params import TrainParams
    from tests.unit.training._fit import SMALL
    from tests.unit.training.test_model import save

    _, transform = synthetic_features(200, seed=0)
    network = network_from_config(transform, TrainParams.from_dict(SMALL).network_config())
    return save(tmp_path_factory.mktemp("model"), network.eval(), transform), transform


@pytest.fixture
def model_dir(saved_model, tmp_path):
    import shutil

    return Path(shutil.copytree(saved_model[0], tmp_path / "model"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_model_from_code_with_our_entry_file_passes_the_check(model_dir):
    tracking.check_model_dir(model_dir, "models:/m/1")
    # The entry file's docstring is not code: a model logged before it was reworded still loads.
    _edit(model_dir / "model_code.py", "Keep it this small", "Keep it small")
    tracking.check_model_dir(model_dir, "models:/m/1")


@pytest.mark.parametrize(
    "tamper, rule",
    [
        (("MLmodel", "mlflow.pyfunc.loaders.code_model", "mlflow.pyfunc.model"), "loader"),
        (
            (
                "MLmodel",
                "model_code_path: ",
                "python_model: python_model.pkl\n    model_code_path: ",
            ),
            "pickled",
        ),
        (("MLmodel", "model_code.py", "evil.py"), "entry file"),
        (("MLmodel", "code: code", "code: artifacts"), "code folder"),
        (
            ("model_code.py", "set_model(DelayModel())", "import os\nset_model(DelayModel())"),
            "not mlpipe's",
        ),
        (("MLmodel", "path: artifacts/weights.npz", "path: ../../etc/passwd"), "outside"),
        (("MLmodel", "flavors:", "flavors: [\n"), "cannot be read"),
    ],
)
def test_a_tampered_or_foreign_model_is_refused(model_dir, tamper, rule):
    from ml.errors import RefusedError

    _edit(model_dir / tamper[0], tamper[1], tamper[2])
    with pytest.raises(RefusedError, match=rf"models:/m/1: .*{rule}"):
        tracking.check_model_dir(model_dir, "models:/m/1")


def test_load_model_refuses_before_running_anything_and_leaves_no_files(
    model_dir, tmp_path, monkeypatch
):
    """A model whose MLmodel asks for a pickled python_model is refused: the pickle (which
    would create a marker file) is never read."""
    import pickle

    from ml.errors import RefusedError

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (model_dir / "python_model.pkl").write_bytes(pickle.dumps(Payload()))
    _edit(
        model_dir / "MLmodel",
        "loader_module: mlflow.pyfunc.loaders.code_model",
        "loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl",
    )
    monkeypatch.setattr(tracking, "use_server", lambda uri=None, settings=None: "file:///unused")
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(RefusedError, match="loader"):
        tracking.load_model(str(model_dir))
    assert not marker.exists() and list(temp.iterdir()) == []
    # The untampered model loads through the same path, without its shipped code.
    _edit(
        model_dir / "MLmodel",
        "loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl",
        "loader_module: mlflow.pyfunc.loaders.code_model",
    )
    model = tracking.load_model(str(model_dir))
    assert model.unwrap_python_model().network is not None and not marker.exists()
    assert list(temp.iterdir()) == [] and (model_dir / "code").is_dir()
