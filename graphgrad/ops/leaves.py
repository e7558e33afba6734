"""The leaf ops: placeholder (fed at run time), variable (persistent, updated by optimizers) and
constant. They have no instruction: their buffers are the feeds and the arrays they own."""
from .registry import OpDef, register


def _no_inputs(shapes, attrs):
    raise AssertionError("leaves are created by gg.placeholder / gg.variable / gg.constant")


for _name, _doc in (("placeholder", "an input fed at run time"),
                    ("variable", "a persistent value, updated by optimizers"),
                    ("constant", "a fixed value")):
    register(OpDef(_name, None, _no_inputs, grad=None, lower=None, flops=lambda ins, out, attrs: 0, doc=_doc))
