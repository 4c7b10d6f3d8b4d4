"""The registered model's entry file (MLflow models-from-code): the model is this code plus data.

`ml.training.package.log_pyfunc` logs this file as the pyfunc's `python_model`: MLflow copies it
into the model (`model_code.py`) and runs it at load time, and it names the model with
`mlflow.models.set_model`. Nothing of the model is pickled: its state is the JSON transform and
config and the plain-array weights that `DelayModel.load_context` reads (`ml.training.weights`).

Keep it this small and stable: where mlpipe is installed, `ml.tracking.load_model` runs a model
only when its entry file is byte for byte this one.
"""

from mlflow.models import set_model

from ml.training.model import DelayModel

set_model(DelayModel())
