"""The ONNX backend interface (onnx.backend.base) on graphgrad: prepare imports a model, run
compiles it and runs it, so ONNX's own node tests (onnx.backend.test) judge graphgrad's ops.

    rep = graphgrad.onnx.backend.prepare(model)        # or Backend.prepare
    outputs = rep.run([x])                              # a list, one array per graph output

Inputs of a float dtype are fed to the compiled program. Inputs of any other dtype are bound as
values known at import time (graphgrad computes in float32/float64; integer tensors are only
shapes, axes and indices to it), so the graph is imported once per distinct value of them.
Outputs that are such values (Shape of an input, say) come back as they are.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from ..runtime import Program
from .common import FLOAT_TYPES, StaticValueRequired
from .importer import ImportedModel, load


class GraphgradRep(BackendRep):
    """A prepared model: imports and compiles on first run for each set of bound values."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        initializers = {t.name for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        # non-tensor inputs (sequences, optionals) go to the importer as feeds, which rejects them
        self._float_inputs = {i.name for i in model.graph.input
                              if i.type.tensor_type.elem_type in FLOAT_TYPES or not i.type.HasField("tensor_type")}
        self._compiled: dict[tuple, tuple[ImportedModel, Program | None]] = {}
        self.last_imported: ImportedModel | None = None

    def run(self, inputs, **kwargs) -> list[np.ndarray]:
        if isinstance(inputs, dict):
            given = dict(inputs)
        else:
            inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            given = dict(zip(self.input_names, inputs))
        arrays = {k: np.asarray(v) for k, v in given.items()}
        static = {k: v for k, v in arrays.items() if k not in self._float_inputs}
        feeds = {k: v for k, v in arrays.items() if k in self._float_inputs}
        key = tuple(sorted((k, v.dtype.str, v.shape, v.tobytes()) for k, v in static.items())) + \
            tuple(sorted((k, v.shape) for k, v in feeds.items()))
        entry = self._compiled.get(key)
        if entry is None:
            imported = self._import(static, feeds)
            computed = [t for t in (imported.values[k] for k in imported.output_names) if not isinstance(t, np.ndarray)]
            entry = (imported, Program(computed) if computed else None)
            self._compiled[key] = entry
        imported, program = entry
        self.last_imported = imported
        results = iter(program({imported.inputs[k]: v for k, v in feeds.items() if k in imported.inputs})
                       if program is not None else [])
        return [v if isinstance(v, np.ndarray) else next(results)
                for v in (imported.values[k] for k in imported.output_names)]


    def _import(self, static: dict, feeds: dict) -> ImportedModel:
        # a float input the graph reads as a shape, a bound or a ratio is bound too, and we retry
        while True:
            try:
                return load(self.model, static_inputs=static, check=False,
                            input_shapes={k: v.shape for k, v in feeds.items()})
            except StaticValueRequired as err:
                if err.input_name not in feeds:
                    raise
                static[err.input_name] = feeds.pop(err.input_name)


class GraphgradBackend(Backend):
    """onnx.backend.base.Backend for graphgrad: CPU only."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> GraphgradRep:
        super().prepare(model, device, **kwargs)         # the checker
        return GraphgradRep(model)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


prepare = GraphgradBackend.prepare
run_model = GraphgradBackend.run_model
supports_device = GraphgradBackend.supports_device
