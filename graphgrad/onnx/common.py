"""What graphgrad's ONNX export, import and backend share: the opsets, the typed errors, the
lazy import of the onnx package (an optional extra: importing graphgrad never needs it), and
the dtype tables."""
from __future__ import annotations

import numpy as np

from ..errors import GraphGradError, ShapeError

#: the opset gg.onnx.export writes (PyTorch's torch.onnx.export default, and what onnxruntime,
#: tf2onnx and Netron all read)
EXPORT_OPSET = 17
#: the oldest and newest default-domain opsets gg.onnx.load reads: from 7 on, elementwise ops
#: broadcast as NumPy does; 28 is the newest opset whose operator versions were checked here
MIN_IMPORT_OPSET = 7
MAX_IMPORT_OPSET = 28

INSTALL_HINT = "pip install graphgrad[onnx] (or: pip install onnx)"


class OnnxError(GraphGradError):
    """Base class of graphgrad's ONNX errors."""


class OnnxMissingError(OnnxError, ImportError):
    """The onnx package is not installed."""


class OnnxFormatError(OnnxError, ValueError):
    """The file or bytes are not a valid ONNX model (truncated, not ONNX, or failing the checker)."""


class OnnxOpsetError(OnnxError, ValueError):
    """The model's opset is outside what graphgrad reads (or an export opset it cannot write)."""


class UnsupportedOpError(OnnxError, NotImplementedError):
    """An op, an attribute value or a dtype with no equivalent on the other side: a graphgrad op
    with no ONNX counterpart at export, an ONNX operator graphgrad does not implement at import."""


class OnnxShapeError(OnnxError, ShapeError):
    """A shape graphgrad cannot represent: a symbolic dimension that is not the batch axis, or a
    shape that is only known when the graph runs."""


class StaticValueRequired(OnnxShapeError):
    """A node needs a value known at import time (a shape, a bound, a ratio) that the graph
    computes, or reads from graph input `input_name` (bindable with static_inputs=)."""

    def __init__(self, message: str, input_name: str):
        super().__init__(message)
        self.input_name = input_name


def require_onnx():
    """The onnx module, or OnnxMissingError saying how to install it."""
    try:
        import onnx
    except ImportError as err:
        raise OnnxMissingError(f"graphgrad's ONNX support needs the onnx package: {INSTALL_HINT}") from err
    return onnx


#: numpy dtypes graphgrad computes in, by ONNX TensorProto element type (FLOAT=1, DOUBLE=11)
FLOAT_TYPES = {1: np.dtype("float32"), 11: np.dtype("float64")}
#: ONNX element type of each dtype a graphgrad tensor can have
ONNX_TYPE = {"float32": 1, "float64": 11, "int64": 7}
