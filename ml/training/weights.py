"""A network's weights as plain arrays: a numpy `.npz` file, read with `allow_pickle=False`.

The registered model's weights are data, never code: nothing here unpickles (`torch.save` /
`torch.load` would), so a tampered weights file is refused, not run. The file holds one array
per tensor and a JSON layout (`__layout__`) that says how they make the state dict:

- a plain tensor is one array;
- a quantized tensor (the dynamic-int8 network's packed Linear weights) is its integer
  representation plus its scale(s) and zero point(s), rebuilt bit for bit;
- the tuples and `torch.dtype`s of packed params are spelled out in the layout, and so are the
  modules' state-dict versions (`_metadata`, which `load_state_dict` reads).

Ships inside the registered model: imports json, numpy and torch only.
"""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ml.errors import RefusedError

LAYOUT_KEY = "__layout__"
FORMAT = "mlpipe-weights-npz/1"
FILE_NAME = "weights.npz"


class WeightsFileError(RefusedError):
    """A weights file that is not a plain-array weights file of this format."""


def save_weights(state_dict: dict, path: str | Path) -> None:
    """Write a state dict as plain arrays (`path` gets no suffix added: name it `.npz`)."""
    arrays: dict[str, np.ndarray] = {}
    layout = {key: _encode(value, arrays) for key, value in state_dict.items()}
    # The modules' state-dict versions: a quantized Linear reads its state by version.
    metadata = dict(getattr(state_dict, "_metadata", None) or {})
    arrays[LAYOUT_KEY] = np.array(
        json.dumps({"format": FORMAT, "entries": layout, "metadata": metadata})
    )
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_weights(path: str | Path) -> OrderedDict:
    """The state dict written by `save_weights`; anything else (a pickle, an object array, a
    file of another layout) is refused with a `WeightsFileError` naming the file."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise WeightsFileError(f"weights file {path}: one bare array, not an .npz archive")
        with loaded:
            # Only `.npy` members: numpy hands any other member (a torch zip's `data.pkl`) back
            # as bytes, and nothing here reads them.
            odd = [m for m in loaded.zip.namelist() if not m.endswith(".npy")]
            if odd:
                raise WeightsFileError(
                    f"weights file {path}: not a plain-array weights file (members that are "
                    f"not arrays: {odd[:3]}); it is not loaded"
                )
            arrays = {name: loaded[name] for name in loaded.files}
    except WeightsFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise WeightsFileError(
            f"weights file {path}: not a plain-array weights file ({exc}); it is not loaded"
        ) from None
    try:
        layout = json.loads(str(arrays.pop(LAYOUT_KEY)))
        if layout.get("format") != FORMAT:
            raise WeightsFileError(f"weights file {path}: format {layout.get('format')!r}")
        state = OrderedDict((k, _decode(spec, arrays)) for k, spec in layout["entries"].items())
        state._metadata = OrderedDict(layout.get("metadata") or {})
        return state
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise WeightsFileError(f"weights file {path}: bad layout ({exc!r})") from None


def _encode(value, arrays: dict[str, np.ndarray]):
    """The layout entry of one state-dict value; its arrays go into `arrays`."""
    if value is None:
        return {"none": True}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, tuple | list):
        return {"tuple": [_encode(v, arrays) for v in value]}
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"weights: cannot store a {type(value).__name__} as plain arrays")
    tensor = value.detach().cpu().contiguous()
    if not tensor.is_quantized:
        return {"tensor": _add(arrays, tensor.numpy())}
    spec = {"dtype": str(tensor.dtype).removeprefix("torch."), "int": _add(arrays, _ints(tensor))}
    if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        spec["scale"] = float(tensor.q_scale())
        spec["zero_point"] = int(tensor.q_zero_point())
    elif tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        spec["scales"] = _add(arrays, tensor.q_per_channel_scales().numpy())
        spec["zero_points"] = _add(arrays, tensor.q_per_channel_zero_points().numpy())
        spec["axis"] = int(tensor.q_per_channel_axis())
    else:
        raise TypeError(f"weights: quantization scheme {tensor.qscheme()} is not supported")
    return {"quantized": spec}


def _ints(tensor: torch.Tensor) -> np.ndarray:
    return tensor.int_repr().numpy()


def _add(arrays: dict[str, np.ndarray], array: np.ndarray) -> str:
    name = f"a{len(arrays)}"
    arrays[name] = array
    return name


def _decode(spec: dict, arrays: dict[str, np.ndarray]):
    if "none" in spec:
        return None
    if "dtype" in spec and len(spec) == 1:
        return _dtype(spec["dtype"])
    if "tuple" in spec:
        return tuple(_decode(s, arrays) for s in spec["tuple"])
    if "tensor" in spec:
        return torch.from_numpy(arrays[spec["tensor"]].copy())
    q = spec["quantized"]
    ints = torch.from_numpy(arrays[q["int"]].copy())
    if "scale" in q:
        tensor = torch._make_per_tensor_quantized_tensor(ints, q["scale"], q["zero_point"])
    else:
        scales = torch.from_numpy(arrays[q["scales"]].copy())
        zero_points = torch.from_numpy(arrays[q["zero_points"]].copy())
        tensor = torch._make_per_channel_quantized_tensor(ints, scales, zero_points, q["axis"])
    if tensor.dtype != _dtype(q["dtype"]):
        raise WeightsFileError(f"weights: quantized dtype {tensor.dtype}, layout says {q['dtype']}")
    return tensor


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise WeightsFileError(f"weights: {name!r} is not a torch dtype")
    return dtype
