"""NumPy references for the convolutional ops, written independently of the C kernels' method:
convolutions as a sum over kernel offsets of einsums over strided views (no im2col), pooling and
batch normalisation as plain loops / reductions. Everything in float64."""
from __future__ import annotations

import numpy as np


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _window(xp, ki, kj, oh, ow, stride, dilation):
    """xp[:, :, ki·dh + sh·i, kj·dw + sw·j] for i < oh, j < ow (a strided view)."""
    (sh, sw), (dh, dw) = stride, dilation
    return xp[:, :, ki * dh: ki * dh + sh * (oh - 1) + 1: sh, kj * dw: kj * dw + sw * (ow - 1) + 1: sw]


def conv_out_size(size, k, stride, pad, dilation):
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    """out[n, o, i, j] = sum_{c, ki, kj} x_padded[n, c, i·sh + ki·dh, j·sw + kj·dw] · w[o, c, ki, kj] + b[o]"""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh = conv_out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_out_size(wd, kw, stride[1], padding[1], dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    out = np.zeros((n, o, oh, ow))
    for ki in range(kh):
        for kj in range(kw):
            out += np.einsum("nchw,oc->nohw", _window(xp, ki, kj, oh, ow, stride, dilation), w[:, :, ki, kj])
    if b is not None:
        out += b[None, :, None, None]
    return out


def conv2d_input_grad(dy, w, input_hw, stride=1, padding=0, dilation=1):
    """The adjoint of conv2d in x: every dy[n, o, i, j]·w[o, c, ki, kj] added back at its input position."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, o, oh, ow = dy.shape
    _, c, kh, kw = w.shape
    h, wd = input_hw
    dxp = np.zeros((n, c, h + 2 * padding[0], wd + 2 * padding[1]))
    for ki in range(kh):
        for kj in range(kw):
            _window(dxp, ki, kj, oh, ow, stride, dilation)[...] += np.einsum("nohw,oc->nchw", dy, w[:, :, ki, kj])
    return dxp[:, :, padding[0]: padding[0] + h, padding[1]: padding[1] + wd]


def conv2d_weight_grad(x, dy, kernel, stride=1, padding=0, dilation=1):
    """dw[o, c, ki, kj] = sum_{n, i, j} dy[n, o, i, j] · x_padded[n, c, i·sh + ki·dh, j·sw + kj·dw]"""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    kh, kw = kernel
    oh, ow = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    dw = np.zeros((dy.shape[1], x.shape[1], kh, kw))
    for ki in range(kh):
        for kj in range(kw):
            dw[:, :, ki, kj] = np.einsum("nchw,nohw->oc", _window(xp, ki, kj, oh, ow, stride, dilation), dy)
    return dw


def _pool_windows(x, kernel, stride, padding):
    """Yield (n, c, i, j, [(flat index, value) of the window's in-bounds elements in row-major order])."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride if stride is not None else kernel)
    ph, pw = _pair(padding)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    items = [((y, z), x[a, b, y, z]) for y in range(i * sh - ph, i * sh - ph + kh)
                             for z in range(j * sw - pw, j * sw - pw + kw) if 0 <= y < h and 0 <= z < w]
                    yield a, b, i, j, oh, ow, items


def max_pool2d(x, kernel, stride=None, padding=0):
    out = None
    for a, b, i, j, oh, ow, items in _pool_windows(x, kernel, stride, padding):
        if out is None:
            out = np.zeros((x.shape[0], x.shape[1], oh, ow))
        y, z = _argmax(items)
        out[a, b, i, j] = x[a, b, y, z]
    return out


def _argmax(items):
    """The first maximum (strictly greater replaces: a tie keeps the first); the first NaN beats numbers."""
    best = items[0]
    for item in items[1:]:
        if item[1] > best[1] or (np.isnan(item[1]) and not np.isnan(best[1])):
            best = item
    return best[0]


def max_pool2d_backward(x, dy, kernel, stride=None, padding=0, positive=False):
    """positive: only where the window's maximum is not <= 0 (then the ReLU backward of relu_backward(x, ·))."""
    dx = np.zeros_like(x)
    for a, b, i, j, oh, ow, items in _pool_windows(x, kernel, stride, padding):
        y, z = _argmax(items)
        if not positive or not x[a, b, y, z] <= 0:
            dx[a, b, y, z] += dy[a, b, i, j]
    return dx


def max_pool2d_gather(x, g, kernel, stride=None, padding=0, positive=False):
    out = None
    for a, b, i, j, oh, ow, items in _pool_windows(x, kernel, stride, padding):
        if out is None:
            out = np.zeros((x.shape[0], x.shape[1], oh, ow))
        y, z = _argmax(items)
        out[a, b, i, j] = g[a, b, y, z] if not positive or not x[a, b, y, z] <= 0 else 0.0
    return out


def avg_pool2d(x, kernel, stride=None, padding=0):
    kh, kw = _pair(kernel)
    out = None
    for a, b, i, j, oh, ow, items in _pool_windows(x, kernel, stride, padding):
        if out is None:
            out = np.zeros((x.shape[0], x.shape[1], oh, ow))
        out[a, b, i, j] = sum(v for _, v in items) / (kh * kw)
    return out


def avg_pool2d_backward(dy, input_hw, kernel, stride=None, padding=0):
    kh, kw = _pair(kernel)
    dx = np.zeros(dy.shape[:2] + tuple(input_hw))
    for a, b, i, j, oh, ow, items in _pool_windows(dx, kernel, stride, padding):
        for (y, z), _ in items:
            dx[a, b, y, z] += dy[a, b, i, j] / (kh * kw)
    return dx


def _channel_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_stats(x):
    axes = _channel_axes(x)
    return np.stack([x.mean(axis=axes), x.var(axis=axes)])


def batch_norm(x, gamma, beta, mean, var, eps=1e-5):
    return (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps) * _per_channel(gamma, x) \
        + _per_channel(beta, x)


def batch_norm_train(x, gamma, beta, eps=1e-5):
    mean, var = batch_stats(x)
    return batch_norm(x, gamma, beta, mean, var, eps)


def batch_norm_backward(x, gamma, dy, eps=1e-5):
    """dx of batch_norm_train, written out from the chain rule through the batch mean and variance."""
    axes = _channel_axes(x)
    m = x.size // x.shape[1]
    mean, var = batch_stats(x)
    xc = x - _per_channel(mean, x)
    inv = 1 / np.sqrt(var + eps)
    dxhat = dy * _per_channel(gamma, x)
    dvar = np.sum(dxhat * xc, axis=axes) * -0.5 * inv ** 3
    dmean = -np.sum(dxhat, axis=axes) * inv + dvar * -2 * np.sum(xc, axis=axes) / m
    return dxhat * _per_channel(inv, x) + _per_channel(dvar, x) * 2 * xc / m + _per_channel(dmean, x) / m


def batch_norm_param_grad(x, dy, eps=1e-5):
    axes = _channel_axes(x)
    mean, var = batch_stats(x)
    xhat = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    return np.stack([np.sum(dy * xhat, axis=axes), np.sum(dy, axis=axes)])
