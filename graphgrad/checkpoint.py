"""Checkpoints: gg.save(path, model, optimizer) and gg.load(path) — one .npz holding the model's
parameters, its description (so gg.load can rebuild it), the optimizer's class, hyperparameters,
state variables (momentum buffers, moments, ...), runtime scalars (learning rate, step count) and
the number of epochs fit has trained. Resuming from it continues training exactly: 2 epochs,
save, load, 2 more epochs gives the same parameters, bit for bit, as 4 epochs straight.

The file is written to a temporary file in the same folder, flushed to disk and renamed over
the target, so an interrupted save never leaves a broken checkpoint: the previous one stays.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .errors import GraphGradError, ShapeError
from .files import atomic_write
from .graph import Tensor

FORMAT = "graphgrad-checkpoint-1"


def _parameters(model) -> list[Tensor]:
    from .runtime import Program
    if isinstance(model, Program):
        return [n for n in model.order if n.op == "variable" and n.trainable]
    if hasattr(model, "parameters"):
        return list(model.parameters())
    raise TypeError(f"gg.save takes a gg.nn model or a compiled Program, got {model!r}")


def _buffers(model) -> list[Tensor]:
    return list(model.buffers()) if hasattr(model, "buffers") else []


def _plain(value):
    """value as JSON data (tuples become lists), or raise TypeError."""
    value = list(value) if isinstance(value, tuple) else value
    json.dumps(value)
    return value


def _optimizer_description(optimizer, index_of: dict[int, int]) -> dict:
    """Class, hyperparameters (PyTorch-style defaults and clipping) and parameter groups, with the
    groups' variables given as indices into the model's parameters."""
    groups = []
    for group in optimizer.param_groups:
        options = {k: _plain(v) for k, v in group.items() if k not in ("params", "initial_lr")}
        groups.append({"params": [index_of[v.id] for v in group["params"] if v.id in index_of], **options})
    return {"class": type(optimizer).__name__, "defaults": {k: _plain(v) for k, v in optimizer.defaults.items()},
            "clip_norm": optimizer.clip_norm, "clip_value": optimizer.clip_value,
            "explicit_groups": bool(getattr(optimizer, "_explicit", False)), "groups": groups,
            "lr": optimizer.lr, "step": optimizer.step_count}


def _rebuild_optimizer(saved: dict, params: list[Tensor], path: str):
    from . import optim
    cls = getattr(optim, saved["class"], None)
    if cls is None:
        raise GraphGradError(f"{path} was saved with optimizer {saved['class']!r}, which this build lacks; "
                             "pass optimizer= to load into one")
    def as_args(options):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    groups = None
    if saved["explicit_groups"]:
        groups = [{**as_args({k: v for k, v in g.items() if k != "params"}), "params": [params[i] for i in g["params"]]}
                  for g in saved["groups"]]
    return cls(groups, **as_args(saved["defaults"]), clip_norm=saved["clip_norm"], clip_value=saved["clip_value"])


def save(path: str, model, optimizer=None, **metadata) -> str:
    """Write a checkpoint of `model` (a gg.nn model, or a compiled Program) and `optimizer`
    (default: the Program's) to `path` atomically. Extra keyword metadata (JSON-able) is stored
    too. Returns path. In distributed training only rank 0 writes; on other ranks it does nothing
    (call gg.distributed.barrier() before other ranks read the file in the same job)."""
    from . import distributed
    from .runtime import Program
    if not distributed.is_main():
        return path                     # under MPI only rank 0 writes (every rank holds the same state)
    if optimizer is None and isinstance(model, Program):
        optimizer = model.optimizer
    params = _parameters(model)
    arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT)}
    try:
        description = model.describe() if hasattr(model, "describe") else None
    except TypeError:
        description = None              # a custom model: gg.load needs model=
    header = {"model": description, "parameter_names": [p.name for p in params],
              "epochs_trained": int(getattr(model, "epochs_trained", 0)), "metadata": metadata}
    if isinstance(getattr(model, "fitted_loss", None), str):   # a loss by name: gg.evaluate's default after load
        header["fitted_loss"] = model.fitted_loss
    for i, p in enumerate(params):
        arrays[f"param/{i}"] = p.value
    for i, b in enumerate(_buffers(model)):
        arrays[f"buffer/{i}"] = b.value
    if optimizer is not None:
        index_of = {p.id: i for i, p in enumerate(params)}
        header["optimizer"] = _optimizer_description(optimizer, index_of)
        arrays["opt_step"] = optimizer._step_var.value
        for g, group in enumerate(optimizer.param_groups):
            arrays[f"opt_lr/{g}"] = group.lr_var.value
        for i, p in enumerate(params):
            for slot, var in optimizer.state_of(p).items():
                arrays[f"opt_state/{i}/{slot}"] = var.value
    arrays["header"] = np.array(json.dumps(header))
    _write_atomically(path, arrays)
    return path


def _write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path, durable=True) as f:
        np.savez(f, **arrays)


@dataclass
class Checkpoint:
    """What gg.load read: the model and optimizer (rebuilt, or the ones passed in, now restored),
    the optimizer's step count and learning rate, the epochs trained, and the saved metadata."""
    path: str
    model: object
    optimizer: object
    step: int | None
    lr: float | None
    epochs_trained: int
    metadata: dict = field(default_factory=dict)


def load(path: str, model=None, optimizer=None) -> Checkpoint:
    """Read a checkpoint. Without `model`, the model is rebuilt from its saved description; with
    one, its parameters are overwritten in place (compiled programs keep working). Likewise the
    optimizer: rebuilt from its class and hyperparameters, or the given one restored. Its state
    (momentum buffers, ...), learning rate and step count are restored either way."""
    from . import nn
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):     # (np.load would try to unpickle it, and say so)
        raise GraphGradError(f"{path} is not a graphgrad checkpoint: not an .npz (zip) file, or cut short "
                             "before its end")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise GraphGradError(f"{path} is truncated or corrupt and cannot be read as a graphgrad checkpoint: "
                             f"{type(err).__name__}: {err}") from None
    if "format" not in arrays or str(arrays["format"]) != FORMAT or "header" not in arrays:
        raise GraphGradError(f"{path} is not a graphgrad checkpoint")
    header = json.loads(str(arrays["header"]))

    if model is None:
        if header["model"] is None:
            raise GraphGradError(f"{path} holds no model description (a custom model was saved): "
                                 "pass the model to restore into, gg.load(path, model=...)")
        model = nn.from_description(header["model"])
    params = _parameters(model)
    names = header["parameter_names"]
    if len(params) != len(names):
        raise ShapeError(f"{path} holds {len(names)} parameters; the model has {len(params)}")
    for i, p in enumerate(params):
        value = arrays[f"param/{i}"]
        if value.shape != p.shape:
            raise ShapeError(f'parameter {i} ("{names[i]}" in the checkpoint, "{p.name}" in the model) has shape '
                             f"{value.shape} in {path} but {p.shape} in the model")
    buffers = _buffers(model)
    saved_buffers = sorted((k for k in arrays if k.startswith("buffer/")), key=lambda k: int(k.split("/")[1]))
    if len(saved_buffers) != len(buffers) or any(arrays[k].shape != b.shape for k, b in zip(saved_buffers, buffers)):
        raise ShapeError(f"{path} holds {len(saved_buffers)} layer buffers (e.g. dropout counters); the model has "
                         f"{len(buffers)} of other shapes")
    for i, p in enumerate(params):
        p.assign(arrays[f"param/{i}"])
    for key, b in zip(saved_buffers, buffers):
        b.assign(arrays[key])
    model.epochs_trained = int(header.get("epochs_trained", 0))
    if "fitted_loss" in header:
        model.fitted_loss = header["fitted_loss"]

    saved_opt = header.get("optimizer")
    step = lr = None
    if saved_opt is not None:
        if optimizer is None:
            optimizer = _rebuild_optimizer(saved_opt, params, path)
        elif type(optimizer).__name__ != saved_opt["class"]:
            raise GraphGradError(f"{path} holds {saved_opt['class']} state; cannot load it into "
                                 f"{type(optimizer).__name__}")
        if len(optimizer.param_groups) != len(saved_opt["groups"]):
            raise GraphGradError(f"{path} holds {len(saved_opt['groups'])} parameter groups; the optimizer has "
                                 f"{len(optimizer.param_groups)}")
        optimizer._step_var.assign(arrays["opt_step"])
        for g, group in enumerate(optimizer.param_groups):
            group["lr"] = float(arrays[f"opt_lr/{g}"])
        for key, value in arrays.items():
            if key.startswith("opt_state/"):
                _, index, slot = key.split("/", 2)
                optimizer.state(params[int(index)], slot, shape=value.shape, dtype=value.dtype).assign(value)
        step, lr = optimizer.step_count, optimizer.lr
    return Checkpoint(path=path, model=model, optimizer=optimizer, step=step, lr=lr,
                      epochs_trained=model.epochs_trained, metadata=header.get("metadata", {}))
