"""Training: gg.fit, gg.evaluate and gg.predict — the lecture's loop (take a batch, forward, loss,
backprop, update; steps and epochs) as the API a Keras or PyTorch user expects.

Speed comes from where the loop runs: a whole epoch is one call into C (Program.run_steps, which
calls gg_program_run_steps),
which gathers each batch's rows from the full X/Y arrays by a shuffled permutation and runs the
compiled forward+backward+update instruction list for every step, recording each step's loss
(and how many rows it classified right). Python only draws the progress bar between calls; with
verbose=1 the epoch runs in chunks of steps sized to redraw a few times a second.

batch_size=1 is stochastic gradient descent, batch_size=None full-batch gradient descent. When
the batch size does not divide the data, the short last batch runs on a second specialisation
of the same program (same variables), or is dropped with drop_last=True.

Divergence: each step's loss is checked in C after the forward pass and before the update, so
when it becomes NaN or Inf the call stops with the variables as they were; fit raises
DivergenceError naming the epoch, the step and the learning rate. (If an update made a variable
non-finite before any loss showed it, the chunk is replayed from a snapshot taken before it,
step by step, up to the last finite state.)
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import ops
from .errors import DivergenceError, FeedError, GraphGradError, NumericsError, ShapeError
from .graph import Tensor, placeholder
from .runtime import Program, epoch_steps, record_count

#: loss names fit and evaluate accept -> the gg function (looked up when used, so ops added later work)
LOSSES = {
    "mse": "mse", "mean_squared_error": "mse",
    "l1": "l1", "mae": "l1", "mean_absolute_error": "l1",
    "huber": "huber",
    "softmax_cross_entropy": "softmax_cross_entropy", "cross_entropy": "softmax_cross_entropy",
    "categorical_crossentropy": "softmax_cross_entropy",
    "binary_cross_entropy": "binary_cross_entropy", "bce": "binary_cross_entropy",
    "binary_crossentropy": "binary_cross_entropy", "binary_cross_entropy_with_logits": "binary_cross_entropy",
}
#: losses that take logits: with one output column, accuracy's predicted class is logit > 0
LOGIT_LOSSES = ("binary_cross_entropy",)
METRICS = ("accuracy",)
PREDICT_BATCH = 256           # gg.evaluate / gg.predict default batch size
CHUNK_SECONDS = 0.25          # verbose=1: time between progress-bar redraws


def loss_function(loss: str | Callable) -> Callable[[Tensor, Tensor], Tensor]:
    """The graph function (prediction, target) -> scalar loss for a name ("mse", ...) or a callable."""
    if callable(loss):
        return loss
    fn = getattr(ops, LOSSES[loss], None) if isinstance(loss, str) and loss in LOSSES else None
    if fn is None:
        available = sorted(name for name, op in LOSSES.items() if hasattr(ops, op))
        raise ValueError(f"unknown loss {loss!r}; this build has {available} "
                         "(or pass a function (prediction, target) -> scalar Tensor)")
    return fn


def _metric_names(metrics) -> list[str]:
    names = []
    for m in metrics or ():
        name = "accuracy" if m in ("accuracy", "acc") else m
        if name not in METRICS:
            raise ValueError(f"unknown metric {m!r}; available: {list(METRICS)}")
        names.append(name)
    return names


# ---- the compiled graph for a model and data of some shape ---------------------------------

@dataclass
class _Graph:
    """The placeholders, prediction and loss built from a model, and the Program compiled from them."""
    program: Program
    x: Tensor
    y: Tensor | None
    pred: Tensor
    loss: Tensor | None
    labels: bool          # the targets are integer class labels
    threshold: float      # accuracy with one output column: class = pred > threshold
    record: Tensor | None = None   # a float64 vector the step computes for a recording callback


def _build(model, kind: str, x_row: tuple, y_row: tuple | None, y_dtype, loss, optimizer,
           check_numerics: bool, recorder: "Callback | None" = None, split_gradients: bool = False) -> _Graph:
    """Build (or reuse: cached on the model) the graph of `kind` "train", "eval" or "predict";
    with a recorder, the train step also computes recorder.step_record(updates); split_gradients:
    the train step compiled in two parts, for graphgrad.distributed."""
    cache = model.__dict__.setdefault("_gg_graphs", {})
    # one entry per kind and shapes: a train graph for another optimizer replaces the old one
    # (keyed by the optimizer, every gg.fit(..., optimizer=New()) would keep a program alive)
    key = (kind, x_row, y_row, None if y_dtype is None else np.dtype(y_dtype).str, loss, check_numerics,
           None if recorder is None else type(recorder).__name__, split_gradients)
    hit = cache.get(key)
    if hit is not None and (kind != "train" or hit.program.optimizer is optimizer):
        return hit
    from .nn import training
    x = placeholder((None,) + x_row, name="x", dtype=model.dtype)
    with training(kind == "train"):
        pred = model(x)
    if not isinstance(pred, Tensor):
        raise TypeError(f"the model returned {pred!r}; it must return a Tensor")
    if not pred.shape or pred.shape[0] is not None:
        raise ShapeError(f'the model\'s output "{pred.name}" has shape {pred.shape}; its first axis must be '
                         "the batch (None)")
    y = loss_t = None
    labels, threshold = False, 0.5
    if kind != "predict":
        y = placeholder((None,) + y_row, name="y", dtype=y_dtype)
        fn = loss_function(loss)
        loss_t = fn(pred, y)
        if not isinstance(loss_t, Tensor) or loss_t.shape != ():
            raise ShapeError(f"the loss must be a scalar Tensor, got {loss_t!r}")
        labels = np.dtype(y_dtype).kind in "iu"
        threshold = 0.0 if any(fn is getattr(ops, name, None) for name in LOGIT_LOSSES) else 0.5
    outputs = [pred] if loss_t is None else [loss_t, pred]
    record_hook = (lambda updates: [recorder.step_record(updates)]) if recorder is not None else None
    program = Program(outputs, optimizer=optimizer if kind == "train" else None, check_numerics=check_numerics,
                      after_update=record_hook, split_gradients=split_gradients and kind == "train")
    record = program.outputs[len(outputs)] if recorder is not None else None
    graph = _Graph(program, x, y, pred, loss_t, labels, threshold, record)
    cache[key] = graph
    return graph


class _Steps:
    """A compiled graph's Program.run_steps over fixed data: fit's training steps, evaluate's."""

    def __init__(self, graph: _Graph, data: dict, batch_size: int, drop_last: bool, accuracy: bool,
                 stop_on_nonfinite: bool = False):
        program = graph.program
        missing = [p.name for p in program.placeholders if p not in data]
        if missing:
            raise GraphGradError(f"the model reads placeholders {missing} that fit does not feed")
        self.graph, self.program, self.data, self.batch_size, self.drop_last = graph, program, data, batch_size, drop_last
        self.accuracy = (graph.pred, data[graph.y]) if accuracy else None
        self.threshold, self.stop_on_nonfinite = graph.threshold, stop_on_nonfinite
        self.run(None, 0, 0, np.zeros(0), np.zeros(0, np.int64))   # builds and checks the C side now

    def run(self, order, first_step: int, n_steps: int, losses=None, correct=None, record=None) -> None:
        accuracy = self.accuracy if correct is not None else None
        self.program.run_steps(self.data, self.batch_size, first_step=first_step, n_steps=n_steps, order=order,
                               drop_last=self.drop_last, losses=losses, stop_on_nonfinite=self.stop_on_nonfinite,
                               accuracy=accuracy, threshold=self.threshold,
                               correct=correct if accuracy else None, record=record)


#: a recording callback with record_every below this runs the recording step every step (one C
#: call per chunk); from it on, the plain step runs between the recorded ones (two calls per record)
ALTERNATE_FROM = 8


class _RecordingSteps:
    """fit's steps with a recording callback: the program that also computes the recorded vector
    runs only for the steps that record (when they are sparse enough, see ALTERNATE_FROM); the
    plain training program, which shares every variable, runs the others. Same steps, same
    updates (both compile the same update rules); the statistics cost only where they are kept."""

    def __init__(self, plain: _Steps, recording: _Steps):
        self.plain, self.recording, self.graph = plain, recording, recording.graph
        self.program = plain.program

    def run(self, order, first_step: int, n_steps: int, losses=None, correct=None, record=None) -> None:
        if record is None:
            return self.plain.run(order, first_step, n_steps, losses, correct)
        output, values, every, count = record
        if every < ALTERNATE_FROM:
            return self.recording.run(order, first_step, n_steps, losses, correct, record)
        done, rows = 0, 0
        while done < n_steps:
            phase = (count + done) % every
            part = 1 if phase == 0 else min(n_steps - done, every - phase)
            try:
                if phase == 0:
                    self.recording.run(order, first_step + done, 1, _tail(losses, done), _tail(correct, done),
                                       (output, values[rows:rows + 1], every, count + done))
                    rows += 1
                else:
                    self.plain.run(order, first_step + done, part, _tail(losses, done), _tail(correct, done))
            except GraphGradError as err:
                if hasattr(err, "steps_done"):
                    err.steps_done += done
                raise
            done += part


def _tail(array, start: int):
    return None if array is None else array[start:]


class _Recording:
    """Where one chunk's records go (a recording callback's): a row for every step of the chunk
    whose optimizer step count is a multiple of the callback's record_every."""

    def __init__(self, recorder: Callback, graph: _Graph, optimizer, k: int):
        self.recorder, self.output, self.updates = recorder, graph.record, graph.program.updates
        self.every, self.count = int(recorder.record_every), optimizer.step_count
        self.values = np.empty((max(record_count(self.count, k, self.every), 1), math.prod(graph.record.shape)))

    def request(self) -> tuple:
        return (self.output, self.values, self.every, self.count)

    def deliver(self, steps_done: int) -> None:
        """Hand the rows of the first steps_done steps to the callback."""
        steps = np.arange(self.count, self.count + steps_done)
        steps = steps[steps % self.every == 0]
        if len(steps):
            self.recorder.on_step_records(steps + 1, self.values[:len(steps)], self.updates)


def _recorder(callbacks) -> Callback | None:
    """The callback that records inside the step, if any (at most one)."""
    found = [cb for cb in callbacks if isinstance(cb, Callback) and type(cb).step_record is not Callback.step_record]
    if len(found) > 1:
        raise ValueError(f"fit records inside the step for one callback at a time; got {found}")
    if found and (isinstance(found[0].record_every, bool) or not isinstance(found[0].record_every, (int, np.integer))
                  or found[0].record_every < 1):
        raise ValueError(f"{type(found[0]).__name__}.record_every must be a positive int, got {found[0].record_every!r}")
    return found[0] if found else None


# ---- data ----------------------------------------------------------------------------------

def _as_rows(array, dtype, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 0:
        raise ShapeError(f"{what} must have a first axis of samples, got a scalar")
    if arr.dtype.kind not in "biuf":
        raise ShapeError(f"{what} has dtype {arr.dtype}; expected numbers")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_model(model) -> None:
    from .nn import Module
    if not isinstance(model, Module):
        raise TypeError(f"fit, evaluate and predict take a gg.nn model (Sequential, Dense, or a gg.nn.Module "
                        f"subclass with forward and parameters), got {model!r}")


def _prepare(model, X, Y=None):
    _check_model(model)
    X = _as_rows(X, model.dtype, "X")
    if len(X) == 0:
        raise ShapeError("X holds no samples")
    if Y is None:
        return X, None
    Y = np.asarray(Y)
    y_dtype = np.int64 if Y.dtype.kind in "iu" and Y.ndim == 1 else model.dtype
    Y = _as_rows(Y, y_dtype, "Y")
    if len(Y) != len(X):
        raise ShapeError(f"X has {len(X)} samples but Y has {len(Y)}")
    return X, Y


# ---- results -------------------------------------------------------------------------------

@dataclass
class History:
    """What fit measured. history["loss"][e] is epoch e's mean training loss (over its samples, as
    the weights changed during the epoch), history["accuracy"] likewise, history["val_loss"] /
    history["val_accuracy"] on validation_data after the epoch; step_losses[e] holds every step's
    loss of epoch e (before that step's update); samples_per_second[e] the epoch's throughput."""
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    step_losses: list[np.ndarray] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)
    #: with a gg.callbacks.GradientStats callback: its per-parameter statistics (see there)
    gradient_stats: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def _record(self, epoch: int, logs: dict, step_losses: np.ndarray, rate: float) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        self.step_losses.append(step_losses)
        self.samples_per_second.append(rate)


class Callback:
    """Base class for fit's callbacks; override what you need. `self.model` is set by fit; setting
    model.stop_training = True ends training after the current epoch.

    Recording inside the step (one callback per fit): a callback whose `step_record(updates)`
    returns a float64 vector Tensor (built from the optimizer's update nodes) has it computed in
    every training step, in C; fit's epoch loop copies it out every `record_every` optimizer steps
    (those where the step count before the step is a multiple of it) and hands the copies to
    `on_step_records(steps, values, updates)`: steps numbered from 1, values (records, vector
    length), and the update nodes the vector was built from (in the order step_record got them)."""
    model = None
    record_every = 0

    def on_train_begin(self, logs: dict) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...
    def on_train_end(self, logs: dict) -> None: ...

    def step_record(self, updates: list[Tensor]) -> Tensor | None:
        return None

    def on_step_records(self, steps: np.ndarray, values: np.ndarray, updates: list[Tensor]) -> None: ...


class EarlyStopping(Callback):
    """Stop when `monitor` (a History key, e.g. "val_loss") has not improved by more than min_delta
    for `patience` epochs; restore_best_weights puts back the parameters of the best epoch."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False):
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(float(min_delta))
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "acc" in monitor) else 1.0
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs):
        self.best, self.wait, self.best_values, self.stopped_epoch = math.inf, 0, None, None

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which fit does not report: {sorted(logs)}")
        value = self.sign * logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_values = [p.value for p in self.model.parameters()]
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.best_values is not None:
                for p, v in zip(self.model.parameters(), self.best_values):
                    p.assign(v)


class ModelCheckpoint(Callback):
    """Save a checkpoint (gg.save: parameters, optimizer state, epochs trained) after every epoch,
    or only when `monitor` improved with save_best_only. `path` may hold "{epoch}" (1-based) and
    any logs key, e.g. "ckpt-{epoch:03d}-{val_loss:.3f}.npz". Each save is atomic."""

    def __init__(self, path: str, optimizer=None, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto"):
        self.path, self.optimizer, self.monitor, self.save_best_only = path, optimizer, monitor, save_best_only
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "acc" in monitor) else 1.0
        self.best = math.inf
        self.saved: list[str] = []

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            if self.monitor not in logs:
                raise KeyError(f"ModelCheckpoint monitors {self.monitor!r}, which fit does not report: {sorted(logs)}")
            value = self.sign * logs[self.monitor]
            if not value < self.best:
                return
            self.best = value
        from .checkpoint import save
        path = self.path.format(epoch=epoch + 1, **logs)
        save(path, self.model, self.optimizer, epoch=epoch + 1, logs=logs)
        self.saved.append(path)


# ---- the training loop ---------------------------------------------------------------------

class _Snapshot:
    """Copies of every variable a program reads (parameters, optimizer state, lr, step count):
    taken before each chunk of steps, restored when a chunk went non-finite."""

    def __init__(self, program: Program):
        self.variables = [n for n in program.order if n.op == "variable"]
        self.saved = [np.empty_like(v.data) for v in self.variables]

    def take(self) -> None:
        for v, s in zip(self.variables, self.saved):
            np.copyto(s, v.data)

    def restore(self) -> None:
        for v, s in zip(self.variables, self.saved):
            np.copyto(v.data, s)

    def saved_value(self, var: Tensor) -> np.ndarray:
        return self.saved[next(i for i, v in enumerate(self.variables) if v is var)]

    def copy(self) -> list[np.ndarray]:
        return [v.data.copy() for v in self.variables]

    def all_finite(self) -> bool:
        return all(np.isfinite(v.data).all() for v in self.variables)


def progress_bar_class():
    """tqdm's notebook bar (a widget) inside a Jupyter kernel that has ipywidgets; the text bar
    everywhere else. A kernel without ipywidgets gets the text bar and, once, a warning saying
    what to install (`make install` installs it)."""
    if "ipykernel.zmqshell" in sys.modules:
        try:
            import ipywidgets  # noqa: F401  (the notebook bar is an ipywidgets widget)
            from tqdm.notebook import tqdm
            return tqdm
        except ImportError:
            warnings.warn("graphgrad: the notebook progress bar needs ipywidgets (pip install ipywidgets); "
                          "showing the text bar instead", stacklevel=3)
    from tqdm.std import tqdm
    return tqdm


def _make_bar(verbose: int, total: int, desc: str):
    if verbose != 1:
        return None
    tqdm = progress_bar_class()
    return tqdm(total=total, desc=desc, unit="sample", unit_scale=True, leave=True, file=sys.stderr,
                dynamic_ncols=True)


def _format_logs(logs: dict) -> str:
    return " - ".join(f"{k} {v:.4g}" for k, v in logs.items())


def fit(model, X, Y, loss: str | Callable = "mse", optimizer=None, epochs: int = 1, batch_size: int | None = 32,
        shuffle: bool = True, seed: int | None = None, validation_data: tuple | None = None,
        metrics: Sequence[str] | None = None, callbacks: Sequence | None = None, drop_last: bool = False,
        verbose: int = 1, check_numerics: bool = False, initial_epoch: int | None = None,
        validation_split: float = 0.0, distributed: bool = False) -> History:
    """Train `model` (a gg.nn module) on X (n, ...) and Y (n, ...), or integer labels Y (n,).

    loss: a name ("mse", "l1", and the losses this build has) or a function (pred, y) -> scalar.
    optimizer: a gg.optim optimizer (default SGD(lr=0.01)), or a name such as "adam" for one with
    its default hyperparameters (as Keras); its state persists across fit calls.
    batch_size: rows per step; 1 = stochastic GD, None = full-batch GD. The short last batch is
    kept (drop_last=False) or dropped. A batch_size above the number of samples is clipped to it,
    drop_last=True included (one full-batch step per epoch, as Keras does; PyTorch's DataLoader
    would yield no batch at all). shuffle draws a new permutation every epoch from
    (seed, epoch number), so per-epoch results are reproducible and a resumed run matches.
    initial_epoch: the epoch number to start counting from (default: the epochs this model has
    already been trained by fit, so two fits of 2 epochs equal one of 4).
    validation_data=(Xv, Yv): evaluated after every epoch (val_loss, val_<metric>).
    validation_split: a fraction in [0, 1) of the samples held out as validation data instead:
    the LAST ones, before any shuffling (as Keras); not together with validation_data.
    metrics: ["accuracy"] (argmax for several outputs, pred > 0.5 for one — logit > 0 with
    binary_cross_entropy; one-hot or integer label targets).
    callbacks: Callback objects, learning-rate schedules from gg.schedules (stepped after each
    epoch), or functions f(epoch, logs) called after each epoch. logs hold the epoch's loss,
    metrics, validation results and the lr it trained with.
    verbose: 0 silent, 1 a progress bar per epoch (loss, metrics, samples/s), 2 one line per epoch.
    check_numerics: stop at the first instruction producing NaN/Inf (NumericsError names it).
    distributed=True: data-parallel over the ranks of an MPI job (mpirun -n N python script.py);
    batch_size is then the global batch. See graphgrad.distributed and docs/distributed.md.

    Raises DivergenceError when the loss becomes NaN/Inf; the variables keep their last finite
    values. Returns a History.
    """
    from .optim import SGD, get
    if distributed:
        from .distributed import fit as distributed_fit
        return distributed_fit(model, X, Y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                               shuffle=shuffle, seed=seed, validation_data=validation_data, metrics=metrics,
                               callbacks=callbacks, drop_last=drop_last, verbose=verbose,
                               check_numerics=check_numerics, initial_epoch=initial_epoch,
                               validation_split=validation_split)
    _check_model(model)
    optimizer = SGD(lr=0.01) if optimizer is None else get(optimizer)
    if int(epochs) < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    metric_names = _metric_names(metrics)
    X, Y = _training_data(model, X, Y)
    if validation_split:
        X, Y, validation_data = _split_validation(X, Y, validation_split, validation_data)
    model.fitted_loss = loss     # what gg.evaluate uses when it is not given a loss
    callbacks = _bind_callbacks(callbacks, model)
    trainer = _Trainer(model, X, Y, loss, optimizer, batch_size, drop_last, "accuracy" in metric_names,
                       check_numerics, _recorder(callbacks))
    validation = _validation(model, validation_data, loss, metric_names, check_numerics)
    first = getattr(model, "epochs_trained", 0) if initial_epoch is None else int(initial_epoch)
    epochs = range(first, first + int(epochs))
    orders = _epoch_orders(len(X), shuffle, seed)
    history = _run_epochs(model, trainer, validation, epochs, orders, callbacks, verbose)
    if trainer.recorder is not None:
        history.gradient_stats = getattr(trainer.recorder, "stats", {})
    return history


def _split_validation(X, Y, fraction, validation_data) -> tuple:
    """(X, Y, (Xv, Yv)) with the last `fraction` of the samples held out, as Keras's validation_split."""
    if validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split must be a fraction in [0, 1), got {fraction!r}")
    held = int(len(X) * fraction)
    if held == 0 or held == len(X):
        raise ValueError(f"validation_split={fraction} of {len(X)} samples leaves "
                         f"{'no validation' if held == 0 else 'no training'} samples")
    cut = len(X) - held
    return X[:cut], Y[:cut], (X[cut:], Y[cut:])


def _run_epochs(model, trainer: "_Trainer", validation: "_Evaluator | None", epochs: range, orders: Callable,
                callbacks: list, verbose: int) -> History:
    """fit's loop: each epoch in the C step loop, then its logs (validation included), History,
    report line and callbacks; stops early when a callback sets model.stop_training."""
    model.stop_training = False
    history = History()
    _call(callbacks, "on_train_begin", {})
    for epoch in epochs:
        _call(callbacks, "on_epoch_begin", epoch, {})
        title = f"epoch {epoch + 1}/{epochs.stop}"
        logs, losses, rate = trainer.run_epoch(epoch, orders(epoch), _make_bar(verbose, trainer.samples, title))
        model.epochs_trained = epoch + 1
        if validation is not None:
            logs.update({f"val_{k}": v for k, v in validation.run().items()})
        history._record(epoch, logs, losses, rate)
        if verbose == 2:
            print(f"{title} - {_format_logs(logs)} - {rate:,.0f} samples/s", file=sys.stderr)
        _call(callbacks, "on_epoch_end", epoch, logs)
        if model.stop_training:
            break
    _call(callbacks, "on_train_end", {})
    return history


def _training_data(model, X, Y) -> tuple[np.ndarray, np.ndarray]:
    """fit's X and Y as contiguous arrays of rows, refused when they hold NaN or Inf."""
    X, Y = _prepare(model, X, Y)
    for name, arr in (("X", X), ("Y", Y)):
        # a NaN input would surface as a "divergence" blamed on the learning rate: name it here
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            row = int(np.argwhere(~np.isfinite(arr))[0][0])
            raise FeedError(f"{name} holds NaN or Inf (first in sample {row}); clean the data before training")
    return X, Y


def _validation(model, validation_data, loss, metric_names: list[str], check_numerics: bool):
    """The compiled forward pass fit runs on validation_data after every epoch (None without)."""
    if validation_data is None:
        return None
    Xv, Yv = _prepare(model, *validation_data)
    return _Evaluator(model, Xv, Yv, loss, min(PREDICT_BATCH, len(Xv)), metric_names, check_numerics)


def _epoch_orders(n: int, shuffle: bool, seed: int | None) -> Callable[[int], np.ndarray | None]:
    """epoch -> the order its steps read the n rows in: a permutation drawn from (seed, epoch),
    so a resumed run draws the same ones; None (in order) without shuffle."""
    base_seed = np.random.SeedSequence().entropy if seed is None else seed

    def order(epoch: int) -> np.ndarray | None:
        return np.random.default_rng([base_seed, epoch]).permutation(n).astype(np.int64) if shuffle else None
    return order


def _bind_callbacks(callbacks, model) -> list:
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if isinstance(cb, Callback):
            cb.model = model
    return callbacks


class _Trainer:
    """fit's compiled training step over its data: runs an epoch through Program.run_steps, in
    chunks when a progress bar is shown, and turns a NaN/Inf loss into DivergenceError with the
    variables at their last finite values."""

    def __init__(self, model, X, Y, loss, optimizer, batch_size, drop_last: bool, accuracy: bool,
                 check_numerics: bool, recorder: Callback | None = None):
        graph = _build(model, "train", X.shape[1:], Y.shape[1:], Y.dtype, loss, optimizer, check_numerics)
        size, n_steps, tail = epoch_steps(len(X), batch_size, drop_last)
        self.steps = _Steps(graph, {graph.x: X, graph.y: Y}, size, drop_last, accuracy, stop_on_nonfinite=True)
        self.recorder = recorder
        if recorder is not None:      # the same step, also computing the callback's vector
            recording = _build(model, "train", X.shape[1:], Y.shape[1:], Y.dtype, loss, optimizer, check_numerics,
                               recorder)
            self.steps = _RecordingSteps(self.steps, _Steps(recording, {recording.x: X, recording.y: Y}, size,
                                                            drop_last, accuracy, stop_on_nonfinite=True))
        self.snapshot = _Snapshot(graph.program)
        self.optimizer, self.accuracy = optimizer, accuracy
        self.sizes = np.array([size] * (n_steps - (1 if tail else 0)) + ([tail] if tail else []), dtype=np.float64)
        self.samples = int(self.sizes.sum())     # rows trained on per epoch

    def run_epoch(self, epoch: int, order, bar) -> tuple[dict, np.ndarray, float]:
        """(logs: loss, accuracy, lr; every step's loss; samples per second) of one epoch."""
        lr_used = self.optimizer.lr
        n_steps = len(self.sizes)
        losses = np.zeros(n_steps)
        correct = np.zeros(n_steps, dtype=np.int64)
        started = time.perf_counter()
        try:
            step, chunk = 0, (n_steps if bar is None else min(n_steps, 8))
            while step < n_steps:
                k = min(chunk, n_steps - step)
                t0 = time.perf_counter()
                self._run_chunk(order, step, k, losses, correct, epoch)
                step += k
                if bar is not None:
                    chunk = max(1, int(CHUNK_SECONDS * k / max(time.perf_counter() - t0, 1e-9)))
                    _bar_update(bar, int(self.sizes[step - k:step].sum()), losses[:step], self.sizes[:step],
                                correct[:step], self.accuracy)
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.perf_counter() - started
        logs = {"loss": float((losses * self.sizes).sum() / self.samples)}
        if self.accuracy:
            logs["accuracy"] = float(correct.sum() / self.samples)
        logs["lr"] = lr_used
        return logs, losses, (self.samples / elapsed if elapsed > 0 else math.inf)

    def _run_chunk(self, order, step: int, k: int, losses, correct, epoch: int) -> None:
        """Steps [step, step + k) of the epoch; on a NaN/Inf loss or a numerics error, put the
        variables back to their last finite state and raise."""
        self.snapshot.take()
        record = None if self.recorder is None else _Recording(self.recorder, self.steps.graph, self.optimizer, k)
        try:
            self.steps.run(order, step, k, losses[step:], correct[step:], None if record is None else record.request())
            if record is not None:
                record.deliver(k)
        except GraphGradError as err:
            if not hasattr(err, "steps_done"):
                raise                       # a check before any step ran
            if record is not None:
                record.deliver(err.steps_done)
            bad = step + err.steps_done     # the epoch's step that failed
            context = f"at epoch {epoch + 1}, step {bad + 1}"
            diverged = isinstance(err, DivergenceError)
            if diverged and err.before_update and self.snapshot.all_finite():
                pass     # the failing step stopped before its updates: the variables are the last finite ones
            elif diverged or isinstance(err, NumericsError):
                self._replay_finite(order, step, err.steps_done)
            if diverged:
                raise self._divergence(losses[bad], context, epoch, bad) from None
            err.args = (f"{err.args[0]}\n  {context}",) + err.args[1:]
            raise

    def _divergence(self, loss: float, context: str, epoch: int, step: int) -> DivergenceError:
        lr = self.optimizer.lr
        err = DivergenceError(
            f"training diverged: the loss became {loss} {context} (optimizer step "
            f"{self.optimizer.step_count + 1}) with learning rate {lr:g}. The variables keep their last finite "
            f"values. The learning rate is probably too large: try a smaller one, e.g. lr={lr / 10:g}.")
        err.epoch, err.step, err.lr, err.loss = epoch + 1, step + 1, lr, float(loss)
        return err

    def _replay_finite(self, order, step: int, good_steps: int) -> None:
        """Restore the chunk's snapshot and redo its good steps one at a time, stopping before any
        step that would leave a variable non-finite (the runs are deterministic, so this retraces
        the original run exactly)."""
        snapshot = self.snapshot
        snapshot.restore()
        for s in range(good_steps):
            before = snapshot.copy()
            try:
                self.steps.run(order, step + s, 1)
                finite = snapshot.all_finite()
            except GraphGradError:
                finite = False
            if not finite:
                for v, value in zip(snapshot.variables, before):
                    np.copyto(v.data, value)
                return


def _call(callbacks, method: str, *args) -> None:
    from .schedules import LRScheduler
    for cb in callbacks:
        if isinstance(cb, Callback):
            getattr(cb, method)(*args)
        elif method != "on_epoch_end":
            continue
        elif isinstance(cb, LRScheduler):
            cb.step()             # an epoch-counting schedule: the next epoch trains with its new lr
        else:
            cb(*args)


def _bar_update(bar, samples: int, losses, sizes, correct, accuracy: bool) -> None:
    seen = sizes.sum()
    post = {"loss": f"{(losses * sizes).sum() / seen:.4g}"}
    if accuracy:
        post["accuracy"] = f"{correct.sum() / seen:.4f}"
    bar.set_postfix(post, refresh=False)
    bar.update(samples)


# ---- evaluation and prediction -------------------------------------------------------------

class _Evaluator:
    """The loss and metrics of a model on fixed data, forward only, in one C call per specialisation."""

    def __init__(self, model, X, Y, loss, batch_size: int, metric_names: list[str], check_numerics: bool = False):
        B, n_steps, tail = epoch_steps(len(X), batch_size)
        self.accuracy = "accuracy" in metric_names
        graph = _build(model, "eval", X.shape[1:], Y.shape[1:], Y.dtype, loss, None, check_numerics)
        self.steps = _Steps(graph, {graph.x: X, graph.y: Y}, B, False, self.accuracy)
        self.sizes = np.array([B] * (n_steps - (1 if tail else 0)) + ([tail] if tail else []), dtype=np.float64)

    def run(self) -> dict[str, float]:
        losses = np.zeros(len(self.sizes))
        correct = np.zeros(len(self.sizes), dtype=np.int64)
        self.steps.run(None, 0, len(self.sizes), losses, correct if self.accuracy else None)
        n = self.sizes.sum()
        logs = {"loss": float((losses * self.sizes).sum() / n)}
        if self.accuracy:
            logs["accuracy"] = float(correct.sum() / n)
        return logs


def evaluate(model, X, Y, loss: str | Callable | None = None, batch_size: int | None = PREDICT_BATCH,
             metrics: Sequence[str] | None = None, check_numerics: bool = False) -> dict[str, float]:
    """The model's mean loss (and metrics, e.g. ["accuracy"]) on X, Y, computed in batches with no
    gradients: {"loss": ..., "accuracy": ...}. The mean is over samples, whatever the batching.

    loss: None (default) uses the loss the model was last trained with by gg.fit — as Keras's
    evaluate uses the compiled loss — and fit's own default, "mse", for a model fit never saw."""
    if loss is None:
        loss = getattr(model, "fitted_loss", "mse")
    X, Y = _prepare(model, X, Y)
    batch = len(X) if batch_size is None else batch_size
    return _Evaluator(model, X, Y, loss, batch, _metric_names(metrics), check_numerics).run()


def predict(model, X, batch_size: int | None = PREDICT_BATCH) -> np.ndarray:
    """The model's outputs for X (n, ...), computed in batches with no gradients: (n, outputs...).

    These are what the model's last layer outputs — logits for a classifier whose last Dense has
    no activation (as softmax_cross_entropy expects). For probabilities, predict with a softmax
    appended: gg.predict(gg.nn.Sequential(model, gg.nn.Softmax()), X)."""
    X, _ = _prepare(model, X)
    B, _, _ = epoch_steps(len(X), len(X) if batch_size is None else batch_size)
    graph = _build(model, "predict", X.shape[1:], None, None, None, None, False)
    row = graph.program.plan(batch_size=B).shapes[graph.pred.id][1:]
    out = np.empty((len(X),) + tuple(row), dtype=graph.pred.dtype)
    graph.program.run_steps({graph.x: X}, B, predictions=(graph.pred, out))
    return out
