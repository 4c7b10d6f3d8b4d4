"""The registered model's package: the pyfunc logged with the code it needs, its artifacts,
signature, input example and explicit requirements, so it loads where mlpipe is not installed.

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
from ml.training.heads import output_columns
from ml.training.model import CONFIG_ARTIFACT, TRANSFORM_ARTIFACT, WEIGHTS_ARTIFACT, DelayModel

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
    "ml.training.model",
)


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


def log_pyfunc(network, transform, network_config: dict, example, extra_config=None):
    """Log the network + fitted transform as a pyfunc taking raw rows, with its code, a
    signature and `example` (raw rows: `input_example`) as its input example."""
    example = example[transform.input_columns].head(5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "transform.json").write_text(transform.to_json())
        config = {"network": network_config, **(extra_config or {})}
        (tmp / "config.json").write_text(json.dumps(config))
        torch.save(network.state_dict(), tmp / "weights.pt")
        with tracking.sys_path_kept():  # MLflow loads the model back to check its example
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=DelayModel(),
                artifacts={
                    TRANSFORM_ARTIFACT: str(tmp / "transform.json"),
                    CONFIG_ARTIFACT: str(tmp / "config.json"),
                    WEIGHTS_ARTIFACT: str(tmp / "weights.pt"),
                },
                code_paths=[str(copy_shipped_code(tmp / "code"))],
                signature=infer_signature(
                    example, model_output_example(example, config.get("target"))
                ),
                input_example=example,
                pip_requirements=requirements(),
            )
