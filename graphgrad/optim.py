"""Optimizers: they turn a loss into update nodes that run in C inside the training step.

Names, hyperparameters, defaults and update rules are PyTorch's (Ftrl, which PyTorch lacks,
is TensorFlow's ApplyFtrlV2; Lion follows its paper). Each class docstring gives the rule.

Runtime scalars: every parameter group's learning rate and the optimizer's step count are
float64 variables that the compiled step reads, so `opt.lr = 0.01` (or a schedule from
graphgrad.schedules) takes effect on the next step without recompiling. The other
hyperparameters are baked into the update instructions when a step is compiled.

State: each variable's optimizer state (momentum buffers, moments, accumulators, ...) lives in
variables made by `Optimizer.state`, created once per variable and shared by every program
compiled with this optimizer, so it is saved and restored with the model. A moving average in
that state (momentum, first and second moments) is stored as 0 where it would fall below the
smallest normal number of its dtype, as TensorFlow and JAX do on CPUs: an average of gradients that
stay 0 would otherwise spend about a hundred steps as subnormal numbers, on which x86 arithmetic is
many times slower, and what it contributes to the update there is far below the variable's precision.

Parameter groups work as in PyTorch: `Adam([{"params": [W1, W2]}, {"params": [b1, b2],
"weight_decay": 0.0}], lr=1e-3, weight_decay=1e-2)`. Without params, an optimizer updates every
trainable variable the loss depends on, in one group.

Gradient clipping (every optimizer): clip_value=c clamps each gradient to [-c, c]
(torch.nn.utils.clip_grad_value_); clip_norm=m scales all gradients together by
min(1, m / (‖g‖ + 1e-6)) with ‖g‖ the global norm over every gradient
(torch.nn.utils.clip_grad_norm_). Both are C instructions between the gradients and the
updates; with both, values are clipped first.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import math
from typing import Iterable

import numpy as np

from . import ops
from .ops import updates
from .autodiff import grad
from .errors import OptimizerError
from .graph import Tensor, ancestors, building, variable


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise OptimizerError(message)


def _check_betas(betas) -> tuple[float, float]:
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise OptimizerError(f"betas must be a pair of numbers, got {betas!r}") from None
    for i, b in enumerate((b1, b2)):
        _check(0.0 <= b < 1.0, f"invalid beta parameter at index {i}: {b} (must be in [0, 1))")
    return b1, b2


class ParamGroup(dict):
    """One parameter group, a dict as in PyTorch ("params", "lr", the hyperparameters). Setting
    "lr" writes the group's float64 learning-rate variable, which compiled steps read at run
    time; the other hyperparameters are fixed once a step using the group is compiled."""

    def __init__(self, optimizer: "Optimizer", index: int, options: dict):
        super().__init__()
        self.optimizer = optimizer
        name = "lr" if index == 0 else f"lr/group{index}"
        self.lr_var = variable(np.float64(0.0), name=name, dtype="float64", trainable=False)
        self.compiled = False
        for key, value in options.items():
            self[key] = value

    def __setitem__(self, key, value):
        if key == "lr":
            value = self.optimizer._check_lr(value)
            self.lr_var.data[...] = value
        elif self.compiled and key in self.optimizer.defaults and self.get(key) != value:
            raise OptimizerError(f"{key} is fixed once a step using this parameter group is compiled (only lr "
                                 "changes at run time); build a new optimizer to change it")
        super().__setitem__(key, value)

    def update(self, other=(), **kwargs):
        """Set several keys at once, each as group[key] = value would (dict.update would skip the
        learning-rate variable and the checks)."""
        for key, value in dict(other, **kwargs).items():
            self[key] = value

    def setdefault(self, key, default=None):
        """group[key], after setting it to `default` (with the checks) when it is missing."""
        if key not in self:
            self[key] = default
        return self[key]


_CLIPPING_DOC = """

    Gradient clipping, as every optimizer: clip_norm=m scales all gradients together so their global
    norm is at most m (torch.nn.utils.clip_grad_norm_; Keras's clipnorm); clip_value=c clamps each
    gradient to [-c, c] (clip_grad_value_; Keras's clipvalue). Both run in C inside the step.
    """

#: other frameworks' spellings of graphgrad's keywords (Keras, TensorFlow), for error messages
_KNOWN_SPELLINGS = {"clipnorm": "clip_norm", "global_clipnorm": "clip_norm", "clipvalue": "clip_value",
                    "epsilon": "eps", "beta_1": "betas", "beta_2": "betas", "decay": "weight_decay"}


def _checked_keywords(init):
    """Wrap an optimizer's __init__ so an unknown keyword is an OptimizerError listing the valid
    ones (with the likely intended name), instead of Python's bare TypeError."""
    parameters = list(inspect.signature(init).parameters.values())[1:]
    valid = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            name = type(self).__name__
            hints = []
            for key in unknown:
                guess = _KNOWN_SPELLINGS.get(key) or next(iter(difflib.get_close_matches(key, valid, 1)), None)
                hints.append(f"{key!r} (did you mean {guess!r}?)" if guess in valid else repr(key))
            raise OptimizerError(f"{name} got unknown keyword argument{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(hints)}; valid: {', '.join(valid)}")
        init(self, *args, **kwargs)

    return checked


class Optimizer:
    """Base class. A subclass passes its hyperparameter defaults (PyTorch's) to __init__, checks
    a group's values in `_check_group`, and builds one update node per variable in `_update`."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked_keywords(cls.__dict__["__init__"])
        if cls.__doc__ and "clip_norm" not in cls.__doc__:
            cls.__doc__ = cls.__doc__.rstrip() + _CLIPPING_DOC

    def __init__(self, params, defaults: dict, clip_norm: float | None = None, clip_value: float | None = None):
        if isinstance(params, (int, float)):
            raise TypeError(f"{type(self).__name__}'s first argument is the list of variables (or parameter "
                            f"groups); pass the learning rate as lr={params}")
        self.defaults = dict(defaults)
        self._step_var = variable(np.float64(0.0), name="step", dtype="float64", trainable=False)
        self._state: dict[int, dict[str, Tensor]] = {}
        self.clip_norm = self._check_clip("clip_norm", clip_norm)
        self.clip_value = self._check_clip("clip_value", clip_value)
        self.param_groups: list[ParamGroup] = []
        self._explicit = params is not None
        if params is None:
            self.add_param_group({"params": []})
        else:
            groups = [params] if isinstance(params, Tensor) else list(params)
            _check(bool(groups), f"{type(self).__name__} got an empty parameter list")
            if all(isinstance(g, dict) for g in groups):
                for g in groups:
                    self.add_param_group(g)
            elif not any(isinstance(g, dict) for g in groups):
                self.add_param_group({"params": groups})
            else:
                raise OptimizerError("params must be a list of variables or a list of parameter-group dicts, "
                                     "not a mix")

    @staticmethod
    def _check_clip(name: str, value):
        if value is None:
            return None
        value = float(value)
        _check(math.isfinite(value) and value > 0, f"{name} must be a finite number > 0, got {value}")
        return value

    # ---- parameter groups ----
    def add_param_group(self, group: dict) -> ParamGroup:
        """Add a group: {"params": [variables...], hyperparameter: value, ...}; missing
        hyperparameters take the optimizer's defaults."""
        if "params" not in group:
            raise OptimizerError('a parameter group needs a "params" list')
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for v in params:
            _check(isinstance(v, Tensor) and v.op == "variable", f"optimizers update variables; got {v!r}")
        seen = {v.id for g in self.param_groups for v in g["params"]}
        for i, v in enumerate(params):
            _check(v.id not in seen and all(w is not v for w in params[:i]),
                   f'variable "{v.name}" appears more than once in the parameter groups')
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        _check(not unknown, f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; it takes "
                            f"{sorted(self.defaults)}")
        options = {**self.defaults, **group, "params": params}
        self._check_group(options)
        pg = ParamGroup(self, len(self.param_groups), options)
        self.param_groups.append(pg)
        return pg

    def _check_group(self, group: dict) -> None:
        """Raise OptimizerError for invalid hyperparameters (subclasses extend it)."""
        for key in ("weight_decay", "eps", "momentum"):
            if key in group:
                value = float(group[key])
                _check(math.isfinite(value) and value >= 0, f"invalid {key}: {group[key]} (must be >= 0)")
        if "betas" in group:
            _check_betas(group["betas"])

    def _check_lr(self, value) -> float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise OptimizerError(f"learning rate must be a number, got {value!r}") from None
        _check(math.isfinite(value) and value >= 0, f"invalid learning rate: {value} (must be a finite number >= 0)")
        return value

    # ---- runtime scalars ----
    @property
    def lr(self) -> float:
        """The learning rate the next step uses (the first group's; setting it sets every group's)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = self._check_lr(value)
        for group in self.param_groups:
            group["lr"] = value

    @property
    def step_count(self) -> int:
        """Steps taken so far (the update rules count from 1)."""
        return int(self._step_var.data)

    # ---- state ----
    def state(self, var: Tensor, name: str, init: float = 0.0, shape: tuple | None = None,
              dtype=None) -> Tensor:
        """The state variable `name` kept for `var` (filled with `init`, var's shape and dtype unless
        given), created on first use."""
        slots = self._state.setdefault(var.id, {})
        if name not in slots:
            value = np.full(var.shape if shape is None else shape, init)
            slots[name] = variable(value, name=f"{var.name}/{name}", dtype=dtype or var.dtype, trainable=False)
        return slots[name]

    def state_of(self, var: Tensor) -> dict[str, Tensor]:
        """Every state variable kept for `var`, by name (empty before a step was compiled)."""
        return dict(self._state.get(var.id, {}))

    def variables(self) -> list[Tensor]:
        """Every variable the optimizer owns: the step count, each group's lr, every state
        variable (what a checkpoint must save to resume training exactly)."""
        out = [self._step_var] + [g.lr_var for g in self.param_groups]
        for slots in self._state.values():
            out.extend(slots.values())
        return out

    # ---- graph building ----
    def minimize(self, loss: Tensor, var_list: list[Tensor] | None = None) -> list[Tensor]:
        """Gradient nodes for `loss`, the clipping nodes, and one update node per variable.
        Variables: var_list, else the parameter groups' (when given), else every trainable
        variable the loss depends on. Returns the update nodes."""
        if var_list is None:
            if self._explicit:
                var_list = [v for g in self.param_groups for v in g["params"]]
            else:
                var_list = [n for n in ancestors([loss]) if n.op == "variable" and n.trainable]
        var_list = [var_list] if isinstance(var_list, Tensor) else list(var_list)
        if not var_list:
            raise OptimizerError(f'optimizer has no variables to update: "{loss.name}" depends on no trainable '
                                 "variable")
        for i, v in enumerate(var_list):
            _check(isinstance(v, Tensor) and v.op == "variable", f"optimizers update variables; got {v!r}")
            _check(all(w is not v for w in var_list[:i]), f'variable "{v.name}" is listed twice')
        groups = [self._group_of(v) for v in var_list]
        grads = grad(loss, var_list)
        with building("update"):
            grads = self._clip(grads)
            step = ops.make("increment", [self._step_var], {"amount": 1.0}, name="step += 1")
            updates = []
            for v, g, group in zip(var_list, grads, groups):
                group.compiled = True
                updates.append(self._update(v, g, group, group.lr_var, step))
        return updates

    def _group_of(self, var: Tensor) -> ParamGroup:
        for group in self.param_groups:
            if any(v is var for v in group["params"]):
                return group
        if self._explicit:
            raise OptimizerError(f'variable "{var.name}" is in none of the optimizer\'s parameter groups')
        self.param_groups[0]["params"].append(var)
        return self.param_groups[0]

    def _clip(self, grads: list[Tensor]) -> list[Tensor]:
        if self.clip_value is not None:
            grads = [updates.clip_by_value(g, self.clip_value, name=f"clip {g.name}") for g in grads]
        if self.clip_norm is not None:
            total = None
            for g in grads:
                total = updates.grad_sumsq(g, total, name="sum g²")
            grads = [updates.clip_by_norm(g, total, self.clip_norm, name=f"clip {g.name}") for g in grads]
        return grads

    def _rule(self, rule: str, var: Tensor, g: Tensor, lr: Tensor, step: Tensor, state: Iterable[str],
              attrs: dict, init: dict | None = None) -> Tensor:
        """The `<rule>_update` node for var: inputs [var, g, lr, step, *state variables]."""
        init = init or {}
        state = tuple(state)
        slots = []
        for name in state:
            if name == "mu_product":   # a per-variable float64 scalar
                slots.append(self.state(var, name, init=1.0, shape=(), dtype="float64"))
            else:
                slots.append(self.state(var, name, init=init.get(name, 0.0)))
        return ops.make(f"{rule}_update", [var, g, lr, step, *slots], {**attrs, "state": state},
                        name=f"update {var.name}")

    def _update(self, var: Tensor, g: Tensor, group: ParamGroup, lr: Tensor, step: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        groups = "; ".join(", ".join(f"{k}={v}" for k, v in g.items() if k != "params") for g in self.param_groups)
        return f"{type(self).__name__}({groups})"


class SGD(Optimizer):
    """Stochastic gradient descent, exactly as torch.optim.SGD:

        g ← g + weight_decay·w
        b ← g                                  on the first step (momentum ≠ 0)
        b ← momentum·b + (1 − dampening)·g     afterwards
        d ← g + momentum·b  (nesterov)  or  b  (momentum ≠ 0)  or  g
        w ← w − lr·d
    """

    def __init__(self, params=None, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov), clip_norm=clip_norm, clip_value=clip_value)

    def _check_group(self, group):
        super()._check_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise OptimizerError("Nesterov momentum requires a momentum and zero dampening")

    def _update(self, var, g, group, lr, step):
        state = ["momentum_buffer"] if group["momentum"] != 0 else []
        return self._rule("sgd", var, g, lr, step, state, {
            "momentum": group["momentum"], "dampening": group["dampening"], "weight_decay": group["weight_decay"],
            "nesterov": bool(group["nesterov"])})


class RMSprop(Optimizer):
    """RMSprop, exactly as torch.optim.RMSprop (eps outside the square root):

        g ← g + weight_decay·w
        s ← α·s + (1 − α)·g²
        centered:  ḡ ← ḡ + (1 − α)·(g − ḡ);  a ← √(s − ḡ²) + eps      else  a ← √s + eps
        momentum > 0:  b ← momentum·b + g/a;  w ← w − lr·b            else  w ← w − lr·g/a
    """

    def __init__(self, params=None, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered), clip_norm=clip_norm, clip_value=clip_value)

    def _check_group(self, group):
        super()._check_group(group)
        _check(0.0 <= group["alpha"] <= 1.0, f"invalid alpha value: {group['alpha']} (must be in [0, 1])")

    def _update(self, var, g, group, lr, step):
        state = ["square_avg"] + (["grad_avg"] if group["centered"] else []) + (
            ["momentum_buffer"] if group["momentum"] > 0 else [])
        return self._rule("rmsprop", var, g, lr, step, state, {
            "alpha": group["alpha"], "eps": group["eps"], "weight_decay": group["weight_decay"],
            "momentum": group["momentum"]})


class Adam(Optimizer):
    """Adam, exactly as torch.optim.Adam (bias correction as PyTorch applies it):

        g ← g + weight_decay·w
        m ← m + (1 − β1)·(g − m);   v ← β2·v + (1 − β2)·g²
        amsgrad:  v̂ ← max(v̂, v)   else  v̂ ← v
        w ← w − lr/(1 − β1ᵗ) · m / (√v̂ / √(1 − β2ᵗ) + eps)
    """
    _decoupled = False

    def __init__(self, params=None, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad),
                         clip_norm=clip_norm, clip_value=clip_value)

    def _update(self, var, g, group, lr, step):
        b1, b2 = _check_betas(group["betas"])
        state = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])
        return self._rule("adam", var, g, lr, step, state, {
            "beta1": b1, "beta2": b2, "eps": group["eps"], "weight_decay": group["weight_decay"],
            "decoupled": self._decoupled})


class AdamW(Adam):
    """AdamW, exactly as torch.optim.AdamW: Adam with decoupled weight decay,
    w ← w·(1 − lr·weight_decay) before the Adam step (which then has no L2 term)."""
    _decoupled = True

    def __init__(self, params=None, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         clip_norm=clip_norm, clip_value=clip_value)


class Adamax(Optimizer):
    """Adamax, exactly as torch.optim.Adamax:

        g ← g + weight_decay·w
        m ← m + (1 − β1)·(g − m);   u ← max(β2·u, |g| + eps)
        w ← w − lr/(1 − β1ᵗ) · m/u
    """

    def __init__(self, params=None, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
            clip_norm=clip_norm, clip_value=clip_value)

    def _update(self, var, g, group, lr, step):
        b1, b2 = _check_betas(group["betas"])
        return self._rule("adamax", var, g, lr, step, ["exp_avg", "exp_inf"], {
            "beta1": b1, "beta2": b2, "eps": group["eps"], "weight_decay": group["weight_decay"]})


class NAdam(Optimizer):
    """NAdam, exactly as torch.optim.NAdam, with its momentum-decay schedule ψ = momentum_decay:

        g ← g + weight_decay·w   (or w ← w·(1 − lr·weight_decay) when decoupled_weight_decay)
        μₜ = β1·(1 − ½·0.96^(t·ψ));   μ_product ← μ_product·μₜ     (a float64 state, starts at 1)
        m ← m + (1 − β1)·(g − m);   v ← β2·v + (1 − β2)·g²;   d = √(v/(1 − β2ᵗ)) + eps
        w ← w − lr·(1 − μₜ)/(1 − μ_product) · g/d − lr·μₜ₊₁/(1 − μ_product·μₜ₊₁) · m/d
    """

    def __init__(self, params=None, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay),
                         clip_norm=clip_norm, clip_value=clip_value)

    def _check_group(self, group):
        super()._check_group(group)
        _check(group["momentum_decay"] >= 0, f"invalid momentum_decay value: {group['momentum_decay']}")

    def _update(self, var, g, group, lr, step):
        b1, b2 = _check_betas(group["betas"])
        return self._rule("nadam", var, g, lr, step, ["exp_avg", "exp_avg_sq", "mu_product"], {
            "beta1": b1, "beta2": b2, "eps": group["eps"], "weight_decay": group["weight_decay"],
            "momentum_decay": group["momentum_decay"], "decoupled": bool(group["decoupled_weight_decay"])})


class Adagrad(Optimizer):
    """Adagrad, exactly as torch.optim.Adagrad:

        g ← g + weight_decay·w
        s ← s + g²                              (s starts at initial_accumulator_value)
        w ← w − lr/(1 + (t − 1)·lr_decay) · g/(√s + eps)
    """

    def __init__(self, params=None, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps),
                                          clip_norm=clip_norm, clip_value=clip_value)

    def _check_group(self, group):
        super()._check_group(group)
        _check(group["lr_decay"] >= 0, f"invalid lr_decay value: {group['lr_decay']}")
        _check(group["initial_accumulator_value"] >= 0,
               f"invalid initial_accumulator_value: {group['initial_accumulator_value']}")

    def _update(self, var, g, group, lr, step):
        return self._rule("adagrad", var, g, lr, step, ["sum"], {
            "lr_decay": group["lr_decay"], "weight_decay": group["weight_decay"], "eps": group["eps"]},
            init={"sum": group["initial_accumulator_value"]})


class Adadelta(Optimizer):
    """Adadelta, exactly as torch.optim.Adadelta:

        g ← g + weight_decay·w
        s ← ρ·s + (1 − ρ)·g²
        δ ← √(a + eps)/√(s + eps) · g;   a ← ρ·a + (1 − ρ)·δ²
        w ← w − lr·δ
    """

    def __init__(self, params=None, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
                 clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay),
            clip_norm=clip_norm, clip_value=clip_value)

    def _check_group(self, group):
        super()._check_group(group)
        _check(0.0 <= group["rho"] <= 1.0, f"invalid rho value: {group['rho']} (must be in [0, 1])")

    def _update(self, var, g, group, lr, step):
        return self._rule("adadelta", var, g, lr, step, ["square_avg", "acc_delta"], {
            "rho": group["rho"], "eps": group["eps"], "weight_decay": group["weight_decay"]})


class Ftrl(Optimizer):
    """FTRL-Proximal (McMahan et al. 2013), exactly as TensorFlow's ApplyFtrlV2 kernel with the
    Keras optimizer's `beta` (folded into l2 as l2 + beta/(2·lr)). PyTorch has no Ftrl; the
    hyperparameters are Keras's, shortened: lr (alias learning_rate), learning_rate_power = −p,
    initial_accumulator_value, l1, l2, l2_shrinkage, beta. With n the squared-gradient
    accumulator (starts at initial_accumulator_value) and z the linear term (starts at 0):

        ĝ ← g + 2·l2_shrinkage·w
        n' ← n + g²
        z ← z + ĝ − (n'ᵖ − nᵖ)/lr · w
        w ← (l1·sign(z) − z) / (n'ᵖ/lr + 2·l2 + beta/lr)   where |z| > l1,   else w ← 0 (exactly)
        n ← n'
    """

    def __init__(self, params=None, lr: float = 1e-3, learning_rate_power: float = -0.5,
                 initial_accumulator_value: float = 0.1, l1: float = 0.0, l2: float = 0.0, l2_shrinkage: float = 0.0,
                 beta: float = 0.0, learning_rate: float | None = None, clip_norm: float | None = None,
                 clip_value: float | None = None):
        if learning_rate is not None:
            lr = learning_rate
        super().__init__(params, dict(lr=lr, learning_rate_power=learning_rate_power,
                                      initial_accumulator_value=initial_accumulator_value, l1=l1, l2=l2,
                                      l2_shrinkage=l2_shrinkage, beta=beta), clip_norm=clip_norm, clip_value=clip_value)

    def _check_lr(self, value) -> float:
        value = super()._check_lr(value)
        _check(value > 0, f"Ftrl divides by the learning rate: it must be > 0, got {value}")
        return value

    def _check_group(self, group):
        super()._check_group(group)
        _check(group["learning_rate_power"] <= 0,
               f"learning_rate_power must be <= 0, got {group['learning_rate_power']}")
        for key in ("initial_accumulator_value", "l1", "l2", "l2_shrinkage", "beta"):
            _check(group[key] >= 0, f"{key} must be >= 0, got {group[key]}")

    def _update(self, var, g, group, lr, step):
        return self._rule("ftrl", var, g, lr, step, ["accumulator", "linear"], {
            "learning_rate_power": group["learning_rate_power"], "l1": group["l1"], "l2": group["l2"],
            "l2_shrinkage": group["l2_shrinkage"], "beta": group["beta"]},
            init={"accumulator": group["initial_accumulator_value"]})


class Lion(Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):

        w ← w·(1 − lr·weight_decay)
        w ← w − lr·sign(β1·m + (1 − β1)·g)          (sign(0) = 0)
        m ← β2·m + (1 − β2)·g
    """

    def __init__(self, params=None, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0,
                 clip_norm: float | None = None,
                 clip_value: float | None = None):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay),
            clip_norm=clip_norm, clip_value=clip_value)

    def _update(self, var, g, group, lr, step):
        b1, b2 = _check_betas(group["betas"])
        return self._rule("lion", var, g, lr, step, ["exp_avg"], {
            "beta1": b1, "beta2": b2, "weight_decay": group["weight_decay"]})


__all__ = ["Optimizer", "ParamGroup", "SGD", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam", "Adagrad", "Adadelta",
           "Ftrl", "Lion"]

# the schedules, reachable as gg.optim.lr_scheduler.StepLR (PyTorch's spelling) or gg.optim.StepLR
from . import schedules as lr_scheduler  # noqa: E402
from .schedules import (CosineAnnealingLR, ExponentialLR, FunctionLR, LambdaLR, LinearLR,  # noqa: E402
                        LRScheduler, MultiStepLR, SequentialLR, StepLR)

__all__ += ["lr_scheduler", "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
            "LambdaLR", "FunctionLR", "SequentialLR"]


#: the optimizers by lower-case name, for Keras-style strings: gg.fit(..., optimizer="adam")
OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, RMSprop, Adam, AdamW, Adamax, NAdam, Adagrad, Adadelta,
                                                     Ftrl, Lion)}


def get(optimizer) -> Optimizer:
    """An optimizer instance from what a user may pass: an instance (returned as it is) or a
    name such as "adam" or "SGD" (that optimizer with its default hyperparameters, as Keras does).
    A class, or anything else, is an OptimizerError that says what to pass."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer.lower())
        if cls is None:
            raise OptimizerError(f"unknown optimizer {optimizer!r}; the names are {', '.join(sorted(OPTIMIZERS))} "
                                 "(or pass an instance such as gg.optim.Adam(lr=1e-3))")
        return cls()
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        raise OptimizerError(f"optimizer=gg.optim.{optimizer.__name__} is the class: pass an optimizer instance, "
                             f"e.g. gg.optim.{optimizer.__name__}(lr=1e-3), or its name "
                             f"{optimizer.__name__.lower()!r} for the default hyperparameters")
    raise OptimizerError(f"optimizer must be a gg.optim optimizer instance (e.g. gg.optim.Adam(lr=1e-3)) or a name "
                         f"such as 'adam'; got {type(optimizer).__name__}")
