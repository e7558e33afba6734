"""graphgrad's ops, one family per module; each op is declared once as an OpDef (registry.py), and
each public op function is marked @export where it is defined: this package exports every marked
one (graphgrad re-exports the top-level ones), so a new op's function needs no export list."""
from . import activations, conv, elementwise, leaves, linalg, losses, random, reduce, shape, updates  # noqa: F401
from .registry import ACTIVATIONS, EXPORTS, REGISTRY, TOP_LEVEL, Lowered, OpDef, export, make

globals().update(EXPORTS)

__all__ = ["REGISTRY", "OpDef", "Lowered", "make", "export", "EXPORTS", "TOP_LEVEL", "ACTIVATIONS", *EXPORTS]
