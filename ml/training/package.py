"""The registered model's package: the pyfunc logged with the code it needs, its artifacts,
signature, input example and explicit requirements, so it loads where mlpipe is not installed.

The model is logged from code (MLflow models-from-code): `python_model` is the entry file
`ml/training/model_code.py`, which MLflow copies into the model as `model_code.py` and runs at
load time; nothing is pickled (no `python_model.pkl`). Its state is data: the transform and the
config as JSON, the weights as plain arrays (`ml.training.weights`, read without unpickling).

The code travels as MLflow `code_paths`: a copy of `SHIPPED_MODULES` in an `ml/` folder, which
MLflow puts on `sys.path` when it loads the model. Where mlpipe is installed and `ml` is already
imported (every mlpipe process that loads a model), `ml.*` resolves to the installed package;
a process that loads a model before it first imports `ml` gets the model's copy as `ml`.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import torch
from mlflow.models import infer_signature

from ml import tracking
from ml.features import sets
from ml.training import weights
from ml.training.heads import output_columns
from ml.training.model import CONFIG_ARTIFACT, TRANSFORM_ARTIFACT, WEIGHTS_ARTIFACT

if TYPE_CHECKING:
    import pandas as pd

# The modules the pyfunc imports, and only those: they ship inside the model (MLflow puts the
# model's `code/` folder on sys.path at load time, so `import ml...` finds them there). Each
# imports nothing beyond numpy, pandas, pyarrow, torch, mlflow and the modules listed here.
SHIPPED_MODULES = (
    "ml",
    "ml.errors",
    "ml.features",
    "ml.features.derived",
    "ml.features.target",
    "ml.features.transform",
    "ml.training",
    "ml.training.heads",
    "ml.training.tensors",
    "ml.training.network",
    "ml.training.weights",
    "ml.training.model",
)

# The models-from-code entry file (`python_model`): MLflow copies it to the model's root
# (`tracking.MODEL_ENTRY_FILE`). Not one of the shipped modules: MLflow runs it, nothing imports it.
ENTRY_MODULE = tracking.MODEL_ENTRY_MODULE


def requirements() -> list[str]:
    """What the model needs installed beside the Python it runs in (mlflow adds itself)."""
    return [f"torch=={torch.__version__.split('+')[0]}", "pandas", "pyarrow"]


def copy_shipped_code(folder: Path) -> Path:
    """The shipped modules copied into `folder/ml/...` (their package layout); returns
    `folder/ml`, the code path to log."""
    for name in SHIPPED_MODULES:
        spec = importlib.util.find_spec(name)
        parts = name.split(".")
        if spec.submodule_search_locations is not None:  # a package: its __init__.py
            target = folder.joinpath(*parts, "__init__.py")
        else:
            target = folder.joinpath(*parts[:-1], f"{parts[-1]}.py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.origin, target)
    return folder / "ml"


def entry_file() -> str:
    """The models-from-code entry file of this installation (`ENTRY_MODULE`'s source)."""
    return importlib.util.find_spec(ENTRY_MODULE).origin


def input_example(manifest: dict, transform) -> pd.DataFrame:
    """A few raw rows of the feature set's eval snapshot, as the model takes them."""
    eval_rows = sets.read_split(manifest, sets.EVAL_SNAPSHOT)
    return eval_rows[transform.input_columns].head(5)


def model_output_example(example: pd.DataFrame, head: dict | None = None) -> pd.DataFrame:
    """Outputs shaped as the model's for its head (`ml.training.heads.output_columns`)."""
    import pandas as pd

    columns = output_columns(head)
    return pd.DataFrame(
        {
            name: pd.Series(["x" if dtype == "string" else 0.5] * len(example), dtype=dtype)
            for name, dtype in columns.items()
        }
    )


def model_files(folder: Path, network, transform, config: dict) -> dict[str, str]:
    """The model's state as data files in `folder`: the transform and the config as JSON, the
    weights as plain arrays. Returns the pyfunc's `artifacts` mapping (name -> file)."""
    (folder / "transform.json").write_text(transform.to_json())
    (folder / "config.json").write_text(json.dumps(config))
    weights.save_weights(network.state_dict(), folder / weights.FILE_NAME)
    return {
        TRANSFORM_ARTIFACT: str(folder / "transform.json"),
        CONFIG_ARTIFACT: str(folder / "config.json"),
        WEIGHTS_ARTIFACT: str(folder / weights.FILE_NAME),
    }


def log_pyfunc(network, transform, network_config: dict, example, extra_config=None):
    """Log the network + fitted transform as a pyfunc from code (`entry_file`) taking raw rows,
    with its code, a signature and `example` (raw rows: `input_example`) as its input example."""
    example = example[transform.input_columns].head(5)
    config = {"network": network_config, **(extra_config or {})}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        artifacts = model_files(tmp, network, transform, config)
        with tracking.sys_path_kept():  # MLflow loads the model back to check its example
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=entry_file(),
                artifacts=artifacts,
                code_paths=[str(copy_shipped_code(tmp / "code"))],
                signature=infer_signature(
                    example, model_output_example(example, config.get("target"))
                ),
                input_example=example,
                pip_requirements=requirements(),
            )
