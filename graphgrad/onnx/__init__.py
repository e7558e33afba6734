"""ONNX in and out (an optional extra: pip install graphgrad[onnx]).

    gg.onnx.export(model_or_outputs, "model.onnx")   # opset 17; see docs/onnx.md
    model = gg.onnx.load("model.onnx")               # an ImportedModel: a graph and a gg.nn module
    gg.onnx.backend                                  # the onnx.backend.base.Backend interface

The onnx package is imported only when one of these is used, so importing graphgrad never
needs it.
"""
from .common import (EXPORT_OPSET, MAX_IMPORT_OPSET, MIN_IMPORT_OPSET, OnnxError, OnnxFormatError, OnnxMissingError,
                     OnnxOpsetError, OnnxShapeError, UnsupportedOpError)


def export(model_or_outputs, path=None, **options):
    """Export a gg.nn model or output Tensor(s) to ONNX (opset 17). See graphgrad.onnx.exporter.export."""
    from .exporter import export as _export
    return _export(model_or_outputs, path, **options)


def load(source, **options):
    """Import an ONNX model (path, bytes or ModelProto) as an ImportedModel. See graphgrad.onnx.importer.load."""
    from .importer import load as _load
    return _load(source, **options)


import_model = load


def supported_operators() -> list[str]:
    """The ONNX operators gg.onnx.load reads."""
    from .importer import supported_operators as _supported
    return _supported()


def exported_ops() -> list[str]:
    """The graphgrad ops gg.onnx.export writes."""
    from .exporter import EXPORTERS
    return sorted(EXPORTERS)


def __getattr__(name: str):
    # gg.onnx.backend and gg.onnx.ImportedModel import onnx: resolve them on first use
    if name == "backend":
        from . import backend
        return backend
    if name == "ImportedModel":
        from .importer import ImportedModel
        return ImportedModel
    raise AttributeError(f"module 'graphgrad.onnx' has no attribute {name!r}")


__all__ = ["export", "load", "import_model", "supported_operators", "exported_ops", "backend", "ImportedModel",
           "EXPORT_OPSET", "MIN_IMPORT_OPSET", "MAX_IMPORT_OPSET", "OnnxError", "OnnxFormatError", "OnnxMissingError",
           "OnnxOpsetError", "OnnxShapeError", "UnsupportedOpError"]
