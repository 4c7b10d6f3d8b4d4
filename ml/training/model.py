"""The registered model: an MLflow pyfunc that takes joined raw rows and returns its predictions
(the columns of its target's kind: `ml.training.heads`), with the fitted feature transform, the
network and its calibrated head inside.

Scoring applies exactly the transform that training used. Ships inside the registered model with
the modules it imports (`ml.features.transform`, `ml.training.network`, `ml.training.weights`;
see `ml.training.package`). The model is logged from code (`ml.training.model_code`), so no
instance of this class is ever pickled: `load_context` builds it from JSON and plain arrays.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc

from ml.features.transform import FeatureTransform
from ml.training.heads import prediction_frame
from ml.training.network import network_from_config, predict_raw, quantize_dynamic
from ml.training.weights import load_weights

if TYPE_CHECKING:
    # Only a name in the hints: resolvable hints would switch on MLflow's type-hint handling.
    import pandas as pd

TRANSFORM_ARTIFACT = "transform"
WEIGHTS_ARTIFACT = "weights"
CONFIG_ARTIFACT = "config"


class DelayModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: joined raw rows in, predictions out (transform + network + head inside):
    `probability` (binary), `probability_<class>` and `predicted_class` (multiclass) or
    `prediction` (regression)."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts[TRANSFORM_ARTIFACT]) as fh:
            self.transform = FeatureTransform.from_json(fh.read())
        with open(context.artifacts[CONFIG_ARTIFACT]) as fh:
            self.config = json.load(fh)
        self.network = network_from_config(self.transform, self.config["network"])
        if self.config.get("quantized"):
            # A dynamic-int8 network: rebuild the same quantized modules, then load its weights.
            self.network = quantize_dynamic(self.network)
        # Plain arrays (`ml.training.weights`): a weights file is data, never unpickled.
        self.network.load_state_dict(load_weights(context.artifacts[WEIGHTS_ARTIFACT]))
        self.network.eval()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        inputs = self.transform.apply(model_input)
        raw = predict_raw(self.network, inputs, self.transform)
        # The config's `target` is the head (kind, calibration); none: an uncalibrated binary one.
        return prediction_frame(raw, self.config.get("target"), model_input.index)
