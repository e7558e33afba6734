"""Convolutional ops (NCHW activations, (out, in, kh, kw) weights, as PyTorch and ONNX): conv2d
and its two gradient ops, max/avg pooling and their backward ops, batch normalisation. The C
kernels are in csrc/conv.c.

Gradients are graph ops with gradients of their own, so second derivatives (a Hessian-vector
product) work through a convolution and through pooling:

    y  = conv2d(x, w)                 dx = conv2d_input_grad(dy, w)   dw = conv2d_weight_grad(x, dy)
    conv2d_input_grad is linear in dy and w:  its VJP is (conv2d(g, w), conv2d_weight_grad(g, dy))
    conv2d_weight_grad is linear in x and dy: its VJP is (conv2d_input_grad(dy, g), conv2d(x, g))
    max_pool2d_backward(x, dy) scatters dy to the arg-max; its VJP in dy is max_pool2d_gather(x, g)
    avg_pool2d_backward(dy) spreads dy; its VJP is avg_pool2d(g)

Batch normalisation in training mode is three nodes: batch_norm_stats(x) (the batch mean and
biased variance, (2, C)), batch_norm_running_update (writes the running mean and variance in
place, like an optimizer update), and batch_norm_train(x, gamma, beta, stats, update), whose
gradient rule gives x's full gradient (through the statistics too): the statistics are only ever
read by it, so they get no gradient of their own (batch_norm_stats has no gradient rule: anything
else that differentiates through them gets a GradientError). The update is an input of batch_norm_train only
so that it runs in every step that computes the output; it is not read. Second derivatives through
batch normalisation are not provided (its backward ops have no gradient rule).

Convolution needs scratch for its column buffers (one image's patches per thread): OpDef.scratch
gives its size, the memory planner places it in the arena for the instruction's duration (it shows
in summary() and the memory picture), and the instruction gets it as its last input.
"""
from __future__ import annotations

import os
from numbers import Integral

from ..errors import ShapeError
from ..graph import Tensor, user_source
from .elementwise import mul, neg, pow, sub
from .reduce import sum as reduce_sum
from .registry import Lowered, OpDef, OpShapeError, export, make, numel, register
from .shape import getitem, reshape

# ---- argument checks (run inside the shape rules, so errors name the node and the user's line) ----


def _pair(value, what: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints >= minimum, as a pair."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in items):
        raise OpShapeError(f"{what} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in items):
        raise OpShapeError(f"{what} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def _spatial(shape, what: str) -> tuple:
    if len(shape) != 4:
        raise OpShapeError(f"{what} must be 4-D (N, C, H, W), got {len(shape)}-D {tuple(shape)}"
                           + ("; add a batch axis (x[None] or reshape) for one image" if len(shape) == 3 else ""))
    if any(d is None for d in shape[1:]):
        raise OpShapeError(f"{what} must have known channels, height and width (only the batch may be None), "
                           f"got {tuple(shape)}")
    return tuple(shape)


def _out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, axis: str) -> int:
    span = dilation * (kernel - 1) + 1
    if size + 2 * pad < span:
        raise OpShapeError(f"the kernel ({span} wide along {axis} with dilation {dilation}) is larger than the "
                           f"padded input ({size} + 2*{pad} = {size + 2 * pad})")
    return (size + 2 * pad - span) // stride + 1


def _conv_params(attrs, kernel: tuple[int, int]) -> tuple:
    """(stride, padding, dilation) as pairs; padding "same" / "valid" resolved for this kernel."""
    stride = _pair(attrs["stride"], "stride", 1)
    dilation = _pair(attrs["dilation"], "dilation", 1)
    padding = attrs["padding"]
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        if stride != (1, 1):
            raise OpShapeError(f'padding="same" needs stride 1 (as in PyTorch), got stride {stride}')
        spans = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if any(s % 2 for s in spans):
            raise OpShapeError(f'padding="same" with kernel {kernel} and dilation {dilation} would pad one side '
                               "more than the other; graphgrad pads symmetrically: give the padding as ints")
        padding = (spans[0] // 2, spans[1] // 2)
    elif isinstance(padding, str):
        raise OpShapeError(f'padding must be an int, a pair of ints, "same" or "valid", got {padding!r}')
    else:
        padding = _pair(padding, "padding", 0)
    return stride, padding, dilation


def _conv_geometry(x_shape, w_shape, attrs) -> list:
    """[n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw] (n may be None), checking everything."""
    n, c, h, w = _spatial(x_shape, "conv2d's input x")
    if len(w_shape) != 4:
        raise OpShapeError(f"the weights must be 4-D (out_channels, in_channels, kh, kw), got {tuple(w_shape)}")
    o, wc, kh, kw = w_shape
    if wc != c:
        raise OpShapeError(f"channel mismatch: x has {c} channels (axis 1) but the weights expect {wc} "
                           f"(weights {tuple(w_shape)} are (out, in, kh, kw))")
    if min(o, kh, kw) < 1:
        raise OpShapeError(f"the weights {tuple(w_shape)} have an empty axis")
    (sh, sw), (ph, pw), (dh, dw) = _conv_params(attrs, (kh, kw))
    oh = _out_size(h, kh, sh, ph, dh, "height")
    ow = _out_size(w, kw, sw, pw, dw, "width")
    return [n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw]


def _resolved(attrs, geometry) -> dict:
    """attrs with the stride, padding and dilation as the pairs the geometry used."""
    return {**attrs, "stride": tuple(geometry[9:11]), "padding": tuple(geometry[11:13]),
            "dilation": tuple(geometry[13:15])}


# ---- conv2d ------------------------------------------------------------------------------------

def _conv2d_shape(shapes, attrs):
    g = _conv_geometry(shapes[0], shapes[1], attrs)
    if len(shapes) > 2 and tuple(shapes[2]) != (g[4],):
        raise OpShapeError(f"the bias must be ({g[4]},), one per output channel, got {tuple(shapes[2])}")
    return (g[0], g[4], g[7], g[8])


def _conv2d_lower(in_shapes, out_shape, attrs) -> Lowered:
    g = _conv_geometry(in_shapes[0], in_shapes[1], attrs)
    return Lowered(dims=g + [int(attrs.get("act", 0))], inputs=[0, 1, 2 if len(in_shapes) > 2 else -1])


def _conv_flops(geometry) -> int:
    n, c, h, w, o, kh, kw, oh, ow = geometry[:9]
    return 2 * n * o * oh * ow * c * kh * kw


def _conv2d_grad(node, g):
    x, w = node.inputs[:2]
    geo = _conv_geometry(x.shape, w.shape, node.attrs)
    attrs = _resolved({}, geo)
    dx = make("conv2d_input_grad", [g, w], {**attrs, "input_hw": (geo[2], geo[3])}, name=f"d{x.name}")
    dw = make("conv2d_weight_grad", [x, g], {**attrs, "kernel": (geo[5], geo[6])}, name=f"d{w.name}")
    grads = [dx, dw]
    if len(node.inputs) > 2:
        grads.append(reduce_sum(g, axis=(0, 2, 3)))
    return grads


def _threads() -> int:
    """Threads the scratch is sized for: as many as the machine has (gemm workspace's rule)."""
    from .._core import lib
    return max(os.cpu_count() or 1, int(lib.gg_get_num_threads()))


def _conv_scratch(kind: int):
    def scratch(in_shapes, out_shape, attrs, dtype) -> int:
        from .._core import ffi, lib
        geo = _conv_lower_geometry(kind, in_shapes, out_shape, attrs)
        shape = ffi.new("gg_conv2d_shape *", geo)
        fn = lib.gg_conv2d_scratch_elems_f64 if dtype.itemsize == 8 else lib.gg_conv2d_scratch_elems_f32
        return int(fn(shape, kind, _threads()))
    return scratch


def _conv_lower_geometry(kind: int, in_shapes, out_shape, attrs) -> list:
    """The concrete geometry of a conv2d (kind 0), input-gradient (1) or weight-gradient (2) node."""
    if kind == 0:
        return _conv_geometry(in_shapes[0], in_shapes[1], attrs)
    if kind == 1:
        return _input_grad_geometry(in_shapes[0], in_shapes[1], attrs)
    return _weight_grad_geometry(in_shapes[0], in_shapes[1], attrs)


register(OpDef("conv2d", "GG_OP_CONV2D", _conv2d_shape, _conv2d_grad, _conv2d_lower,
               flops=lambda ins, out, attrs: _conv_flops(_conv_geometry(ins[0], ins[1], attrs)) + (
                   numel(out) if len(ins) > 2 else 0),
               scratch=_conv_scratch(0),
               doc="2-D cross-correlation of NCHW x with (out, in, kh, kw) weights, optional bias per channel"))


# ---- conv2d_input_grad(dy, w): dx of conv2d ---------------------------------------------------------

def _input_grad_geometry(dy_shape, w_shape, attrs) -> list:
    o, c, kh, kw = w_shape
    if len(dy_shape) != 4:
        raise OpShapeError(f"the output gradient must be 4-D, got {tuple(dy_shape)}")
    h, w = attrs["input_hw"]
    geo = _conv_geometry((dy_shape[0], c, h, w), w_shape, attrs)
    if tuple(dy_shape[1:]) != (o, geo[7], geo[8]):
        raise OpShapeError(f"the output gradient {tuple(dy_shape)} does not match the convolution's output "
                           f"(N, {o}, {geo[7]}, {geo[8]})")
    return geo


def _input_grad_grad(node, g):
    dy, w = node.inputs
    geo = _input_grad_geometry(dy.shape, w.shape, node.attrs)
    attrs = _resolved({}, geo)
    return [make("conv2d", [g, w], attrs),
            make("conv2d_weight_grad", [g, dy], {**attrs, "kernel": (geo[5], geo[6])})]


register(OpDef("conv2d_input_grad", "GG_OP_CONV2D_INPUT_GRAD",
               lambda shapes, attrs: (lambda g: (g[0], g[1], g[2], g[3]))(_input_grad_geometry(*shapes, attrs)),
               _input_grad_grad,
               lambda ins, out, attrs: Lowered(dims=_input_grad_geometry(ins[0], ins[1], attrs)),
               flops=lambda ins, out, attrs: _conv_flops(_input_grad_geometry(ins[0], ins[1], attrs)),
               scratch=_conv_scratch(1),
               doc="dx of conv2d: wᵀ·dy per image through GEMM, then col2im"))


# ---- conv2d_weight_grad(x, dy): dw of conv2d --------------------------------------------------------

def _weight_grad_geometry(x_shape, dy_shape, attrs) -> list:
    n, c, h, w = _spatial(x_shape, "the convolution's input")
    if len(dy_shape) != 4:
        raise OpShapeError(f"the output gradient must be 4-D, got {tuple(dy_shape)}")
    kh, kw = attrs["kernel"]
    o = dy_shape[1]
    geo = _conv_geometry(x_shape, (o, c, kh, kw), attrs)
    if (dy_shape[0] is not None and n is not None and dy_shape[0] != n) or tuple(dy_shape[2:]) != (geo[7], geo[8]):
        raise OpShapeError(f"the output gradient {tuple(dy_shape)} does not match the convolution's output "
                           f"({n}, {o}, {geo[7]}, {geo[8]})")
    if geo[0] is None:
        geo[0] = dy_shape[0]
    return geo


def _weight_grad_grad(node, g):
    x, dy = node.inputs
    geo = _weight_grad_geometry(x.shape, dy.shape, node.attrs)
    attrs = _resolved({}, geo)
    return [make("conv2d_input_grad", [dy, g], {**attrs, "input_hw": (geo[2], geo[3])}),
            make("conv2d", [x, g], attrs)]


register(OpDef("conv2d_weight_grad", "GG_OP_CONV2D_WEIGHT_GRAD",
               lambda shapes, attrs: (lambda g: (g[4], g[1], g[5], g[6]))(_weight_grad_geometry(*shapes, attrs)),
               _weight_grad_grad,
               lambda ins, out, attrs: Lowered(dims=_weight_grad_geometry(ins[0], ins[1], attrs)),
               flops=lambda ins, out, attrs: _conv_flops(_weight_grad_geometry(ins[0], ins[1], attrs)),
               scratch=_conv_scratch(2),
               doc="dw of conv2d: the sum over images of dy·colᵀ through GEMM"))


# ---- conv2d_pooled_weight_grad(x, r, g): conv2d_weight_grad(x, max_pool2d_backward(r, g, positive)) ---------
# The compiler's simplify pass makes it of a small first layer's weight gradient (conv -> ReLU -> max pool):
# only the pooled gradients and their windows' arg-max in r are read, not the input-sized gradient.
# attrs: the weight gradient's (stride, padding, dilation, kernel) and "pool", the max pool's attrs.

def _pooled_weight_grad_geometry(shapes, attrs) -> tuple[list, list]:
    x, r, g = shapes
    conv = _weight_grad_geometry(x, r, attrs)
    pool = _pool_geometry(r, attrs["pool"], "max_pool2d")
    if tuple(g[1:]) != (pool[1], pool[4], pool[5]):
        raise OpShapeError(f"the pooled gradient {tuple(g)} does not match the pool's output "
                           f"(N, {pool[1]}, {pool[4]}, {pool[5]})")
    return conv, pool


register(OpDef("conv2d_pooled_weight_grad", "GG_OP_CONV2D_POOLED_WEIGHT_GRAD",
               lambda shapes, attrs: (lambda g: (g[4], g[1], g[5], g[6]))(_pooled_weight_grad_geometry(shapes, attrs)[0]),
               None,
               lambda ins, out, attrs: Lowered(dims=sum(_pooled_weight_grad_geometry(ins, attrs), [])),
               flops=lambda ins, out, attrs: 2 * numel(ins[2]) * numel(out[1:]),
               doc="dw of conv2d through a ReLU and max pool: each passing pooled gradient times the patch "
                   "under its window's arg-max"))


@export
def conv2d(x: Tensor, w: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           name: str | None = None) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch's conv2d): x (N, C, H, W), w (O, C, kh, kw),
    bias (O,) or None -> (N, O, OH, OW), OH = (H + 2·pad - dilation·(kh-1) - 1) // stride + 1.
    stride, dilation: int or pair; padding: int, pair, "valid" (0) or "same" (stride 1 only)."""
    inputs = [x, w] if bias is None else [x, w, bias]
    return make("conv2d", inputs, {"stride": stride, "padding": padding, "dilation": dilation}, name=name)


# ---- pooling ------------------------------------------------------------------------------------------

def _pool_geometry(x_shape, attrs, op: str) -> list:
    """[n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw]."""
    n, c, h, w = _spatial(x_shape, f"{op}'s input")
    kh, kw = _pair(attrs["kernel_size"], "kernel_size", 1)
    stride = attrs["stride"]
    sh, sw = (kh, kw) if stride is None else _pair(stride, "stride", 1)
    ph, pw = _pair(attrs["padding"], "padding", 0)
    if 2 * ph > kh or 2 * pw > kw:
        raise OpShapeError(f"padding {(ph, pw)} must be at most half the kernel {(kh, kw)} (as in PyTorch)")
    oh = _out_size(h, kh, sh, ph, 1, "height")
    ow = _out_size(w, kw, sw, pw, 1, "width")
    return [n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw]


def _pool_flops(ins, out, attrs, op):
    g = _pool_geometry(ins[0], attrs, op)
    return numel(g[:2]) * g[4] * g[5] * g[6] * g[7]


def _pool_shape(op):
    return lambda shapes, attrs: (lambda g: (g[0], g[1], g[4], g[5]))(_pool_geometry(shapes[0], attrs, op))


def _pool_lower(op, source: int = 0, flag: bool = False):
    """dims: the pool geometry, then (max_pool2d_backward and gather) the `positive` flag."""
    def lower(ins, out, attrs):
        dims = _pool_geometry(_pool_input(ins, out, attrs, source), attrs, op)
        return Lowered(dims=dims + ([int(bool(attrs.get("positive", False)))] if flag else []))
    return lower


def _pool_input(ins, out, attrs, source):
    """The pooled tensor's shape: input `source`, or (for avg_pool2d_backward) the output."""
    return out if source < 0 else ins[source]


def _same_as_first(shapes, attrs):
    return tuple(shapes[0])


register(OpDef("max_pool2d", "GG_OP_MAX_POOL2D", _pool_shape("max_pool2d"),
               grad=lambda node, g: [make("max_pool2d_backward", [node.inputs[0], g], dict(node.attrs))],
               lower=_pool_lower("max_pool2d"), flops=lambda i, o, a: _pool_flops(i, o, a, "max_pool2d"),
               doc="maximum over each window (padding is -inf; a tie goes to the first maximum)"))


def _max_backward_shape(shapes, attrs):
    pooled = _pool_shape("max_pool2d")([shapes[0]], attrs)
    if len(shapes[1]) != 4 or any(a is not None and b is not None and a != b for a, b in zip(pooled, shapes[1])):
        raise OpShapeError(f"the output gradient {tuple(shapes[1])} does not match the pooled shape {pooled}")
    return tuple(shapes[0])


register(OpDef("max_pool2d_backward", "GG_OP_MAX_POOL2D_BACKWARD", _max_backward_shape,
               grad=lambda node, g: [None, make("max_pool2d_gather", [node.inputs[0], g], dict(node.attrs))],
               lower=_pool_lower("max_pool2d", flag=True), flops=lambda i, o, a: _pool_flops(i, o, a, "max_pool2d"),
               doc="dx: each dy added at its window's arg-max in x (attr positive: only where that maximum is not <= 0, "
                   "the backward of a ReLU whose output x is folded in; the simplify pass sets it)"))


def _gather_shape(shapes, attrs):
    if len(shapes[1]) != 4 or any(a is not None and b is not None and a != b for a, b in zip(shapes[0], shapes[1])):
        raise OpShapeError(f"g {tuple(shapes[1])} must have x's shape {tuple(shapes[0])}")
    return _pool_shape("max_pool2d")([shapes[0]], attrs)


register(OpDef("max_pool2d_gather", "GG_OP_MAX_POOL2D_GATHER", _gather_shape,
               grad=lambda node, g: [None, make("max_pool2d_backward", [node.inputs[0], g], dict(node.attrs))],
               lower=_pool_lower("max_pool2d", flag=True), flops=lambda i, o, a: _pool_flops(i, o, a, "max_pool2d"),
               doc="g read at each window's arg-max in x (max_pool2d_backward's adjoint, positive as there)"))

register(OpDef("avg_pool2d", "GG_OP_AVG_POOL2D", _pool_shape("avg_pool2d"),
               grad=lambda node, g: [make("avg_pool2d_backward", [g],
                                          {**node.attrs, "input_hw": tuple(node.inputs[0].shape[2:])})],
               lower=_pool_lower("avg_pool2d"), flops=lambda i, o, a: _pool_flops(i, o, a, "avg_pool2d"),
               doc="mean over each window, dividing by kh·kw (count_include_pad=True, PyTorch's default)"))


def _avg_backward_shape(shapes, attrs):
    dy = tuple(shapes[0])
    if len(dy) != 4:
        raise OpShapeError(f"the output gradient must be 4-D, got {dy}")
    x = (dy[0], dy[1], *attrs["input_hw"])
    pooled = _pool_shape("avg_pool2d")([x], attrs)
    if dy[1:] != pooled[1:]:
        raise OpShapeError(f"the output gradient {dy} does not match the pooled shape {pooled}")
    return x


register(OpDef("avg_pool2d_backward", "GG_OP_AVG_POOL2D_BACKWARD", _avg_backward_shape,
               grad=lambda node, g: [make("avg_pool2d", [g], {k: v for k, v in node.attrs.items() if k != "input_hw"})],
               lower=_pool_lower("avg_pool2d", source=-1), flops=lambda i, o, a: _pool_flops([o], i[0], a, "avg_pool2d"),
               doc="dx: each dy spread evenly over its window"))


def _pool_attrs(kernel_size, stride, padding) -> dict:
    return {"kernel_size": kernel_size, "stride": stride, "padding": padding}


@export
def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, name: str | None = None) -> Tensor:
    """Max pooling of NCHW x: windows kernel_size (int or pair), stride (default: the kernel size),
    padding (int or pair, at most half the kernel, padded with -inf). A tie goes to the first
    maximum in row-major window order, as in PyTorch."""
    return make("max_pool2d", [x], _pool_attrs(kernel_size, stride, padding), name=name)


@export
def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, name: str | None = None) -> Tensor:
    """Average pooling of NCHW x; every window divides by kh·kw, padding counted as zeros
    (PyTorch's count_include_pad=True default; floor mode)."""
    return make("avg_pool2d", [x], _pool_attrs(kernel_size, stride, padding), name=name)


@export
def global_avg_pool2d(x: Tensor, name: str | None = None) -> Tensor:
    """The mean of each channel over height and width: NCHW x -> (N, C) (as Keras'
    GlobalAveragePooling2D; the mean op, so nothing new runs)."""
    if x.ndim != 4:
        raise ShapeError(f'global_avg_pool2d of "{x.name}": the input must be 4-D (N, C, H, W), got {x.shape}'
                         f"\n  at {user_source()}")
    return make("sum", [x], {"axes": (2, 3), "keepdims": False, "mean": True}, name=name)


@export
def flatten(x: Tensor, name: str | None = None) -> Tensor:
    """(N, d1, d2, ...) -> (N, d1·d2·...), C order (NCHW: channel-major, as PyTorch and ONNX)."""
    if x.ndim < 2 or any(d is None for d in x.shape[1:]):
        raise ShapeError(f'flatten of "{x.name}": the input must be (N, ...) with known sizes past the batch '
                         f"axis, got {x.shape}\n  at {user_source()}")
    return reshape(x, (x.shape[0], numel(x.shape[1:])), name=name)


# ---- batch normalisation ------------------------------------------------------------------------

def _bn_layout(x_shape, what: str = "batch_norm's input") -> tuple:
    """(n, c, s): x as (N, C, spatial), for NCHW or (N, F) input."""
    if len(x_shape) not in (2, 4):
        raise OpShapeError(f"{what} must be (N, C, H, W) or (N, F), got {len(x_shape)}-D {tuple(x_shape)}")
    if any(d is None for d in x_shape[1:]):
        raise OpShapeError(f"{what} must have known sizes past the batch axis, got {tuple(x_shape)}")
    return x_shape[0], x_shape[1], numel(x_shape[2:])


def _check_channel_vectors(shapes, c, names):
    for shape, label in zip(shapes, names):
        if tuple(shape) != (c,):
            raise OpShapeError(f"{label} must be ({c},), one per channel, got {tuple(shape)}")


register(OpDef("batch_norm_stats", "GG_OP_BATCH_NORM_STATS",
               lambda shapes, attrs: (2, _bn_layout(shapes[0])[1]), None,
               lambda ins, out, attrs: Lowered(dims=list(_bn_layout(ins[0]))),
               flops=lambda ins, out, attrs: 3 * numel(ins[0]),
               doc="(2, C): the batch mean and biased variance of each channel"))


def _running_update_shape(shapes, attrs):
    c = _bn_layout(shapes[3])[1]
    _check_channel_vectors(shapes[:2], c, ("running_mean", "running_var"))
    if tuple(shapes[2]) != (2, c):
        raise OpShapeError(f"the statistics must be (2, {c}), got {tuple(shapes[2])}")
    return tuple(shapes[0])


def _running_update_lower(ins, out, attrs) -> Lowered:
    n, c, s = _bn_layout(ins[3])
    return Lowered(dims=[c, n * s], attrs=[attrs["momentum"]], inputs=[1, 2])


register(OpDef("batch_norm_running_update", "GG_OP_BATCH_NORM_RUNNING_UPDATE", _running_update_shape, None,
               _running_update_lower, dtype=lambda op, dtypes, attrs: dtypes[0], writes=(0, 1),
               flops=lambda ins, out, attrs: 6 * numel(out),
               doc="running_mean, running_var ← (1-momentum)·running + momentum·batch (variance unbiased)"))


def _bn_train_shape(shapes, attrs):
    n, c, s = _bn_layout(shapes[0])
    _check_channel_vectors(shapes[1:3], c, ("gamma", "beta"))
    return tuple(shapes[0])


def _bn_train_grad(node, g):
    x, gamma, beta, stats, _ = node.inputs
    eps = {"eps": node.attrs["eps"]}
    dx = make("batch_norm_backward", [x, gamma, stats, g], eps, name=f"d{x.name}")
    dparams = make("batch_norm_param_grad", [x, stats, g], eps)
    return [dx, getitem(dparams, 0), getitem(dparams, 1), None, None]


def _bn_lower(ins, out, attrs) -> Lowered:
    n, c, s = _bn_layout(ins[0])
    return Lowered(dims=[n, c, s, 1], attrs=[attrs["eps"]], inputs=[0, 3, 3, 1, 2])


register(OpDef("batch_norm_train", "GG_OP_BATCH_NORM", _bn_train_shape, _bn_train_grad, _bn_lower,
               flops=lambda ins, out, attrs: 2 * numel(out),
               doc="(x - batch mean) / sqrt(batch var + eps) · gamma + beta (training mode)"))


def _bn_eval_shape(shapes, attrs):
    n, c, s = _bn_layout(shapes[0])
    _check_channel_vectors(shapes[1:5], c, ("gamma", "beta", "running_mean", "running_var"))
    return tuple(shapes[0])


def _channel_view(v: Tensor, x: Tensor) -> Tensor:
    """A (C,) vector shaped to broadcast over x's channel axis."""
    return reshape(v, (v.shape[0],) + (1,) * (x.ndim - 2)) if x.ndim > 2 else v


def _bn_eval_grad(node, g):
    """Evaluation mode is an affine map per channel, y = (x - mean)·k + beta with k = gamma·inv_std:
    dx = g·k, dgamma = Σ g·x̂, dbeta = Σ g, dmean = -Σ g·k, dvar = Σ g·(x - mean)·gamma·(-½)·inv_std³."""
    x, gamma, beta, mean, var = node.inputs
    axes = (0,) + tuple(range(2, x.ndim))
    inv = pow(var + node.attrs["eps"], -0.5)
    k = mul(gamma, inv)
    centred = sub(x, _channel_view(mean, x))
    dx = mul(g, _channel_view(k, x))
    dgamma = reduce_sum(mul(g, mul(centred, _channel_view(inv, x))), axis=axes)
    dmean = neg(reduce_sum(dx, axis=axes))
    dvar = mul(reduce_sum(mul(g, centred), axis=axes), mul(mul(k, mul(inv, inv)), -0.5))
    return [dx, dgamma, reduce_sum(g, axis=axes), dmean, dvar]


register(OpDef("batch_norm_eval", "GG_OP_BATCH_NORM", _bn_eval_shape, _bn_eval_grad,
               lambda ins, out, attrs: Lowered(dims=[*_bn_layout(ins[0]), 0], attrs=[attrs["eps"]],
                                               inputs=[0, 3, 4, 1, 2]),
               flops=lambda ins, out, attrs: 2 * numel(out),
               doc="(x - running mean) / sqrt(running var + eps) · gamma + beta (evaluation mode)"))


def _bn_backward_shape(shapes, attrs):
    n, c, s = _bn_layout(shapes[0])
    _check_channel_vectors(shapes[1:2], c, ("gamma",))
    return tuple(shapes[0])


register(OpDef("batch_norm_backward", "GG_OP_BATCH_NORM_BACKWARD", _bn_backward_shape, None,
               lambda ins, out, attrs: Lowered(dims=list(_bn_layout(ins[0])), attrs=[attrs["eps"]]),
               flops=lambda ins, out, attrs: 8 * numel(out),
               doc="dx of batch_norm_train, through the batch statistics"))
register(OpDef("batch_norm_param_grad", "GG_OP_BATCH_NORM_PARAM_GRAD",
               lambda shapes, attrs: (2, _bn_layout(shapes[0])[1]), None,
               lambda ins, out, attrs: Lowered(dims=list(_bn_layout(ins[0])), attrs=[attrs["eps"]]),
               flops=lambda ins, out, attrs: 4 * numel(ins[0]),
               doc="(2, C): the gradients of gamma (Σ dy·x̂) and beta (Σ dy)"))


@export
def batch_norm(x: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor, training: bool,
               momentum: float = 0.1, eps: float = 1e-5, name: str | None = None) -> Tensor:
    """Batch normalisation over the channel axis of NCHW x (or the feature axis of (N, F)), with
    PyTorch's conventions. training=True: normalise by the batch's mean and biased variance, and
    move the running statistics (float variables, (C,)) towards the batch's — the variance
    unbiased, by `momentum` — inside the same compiled step. training=False: normalise by the
    running statistics."""
    momentum, eps = float(momentum), float(eps)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm momentum must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"batch_norm eps must be positive, got {eps}")
    label = name or "batch_norm"
    if not training:
        return make("batch_norm_eval", [x, gamma, beta, running_mean, running_var], {"eps": eps}, name=name)
    stats = make("batch_norm_stats", [x], name=f"{label}/stats")
    update = make("batch_norm_running_update", [running_mean, running_var, stats, x], {"momentum": momentum},
                  name=f"{label}/running stats")
    return make("batch_norm_train", [x, gamma, beta, stats, update], {"eps": eps}, name=name)
