"""Optimizers against their published rules, step by step.

Every optimizer runs 50 steps on a small least-squares problem (loss = mean((Xw + b − y)²)) and
after each step its variables are compared with a NumPy transcription of the rule written here,
from PyTorch's documented algorithms (TensorFlow's ApplyFtrlV2 for Ftrl, the paper for Lion):
float64 within 1e-10, float32 within 1e-5 relative. Also: Ftrl by hand, schedules without
recompiling, clipping, parameter groups, and the typed errors of bad configurations.
"""
import math

import numpy as np
import pytest

import graphgrad as gg
from graphgrad.errors import OptimizerError

STEPS = 50


# ---- the problem ------------------------------------------------------------------------------

def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((16, 4))
    Y = X @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.3 + 0.1 * rng.standard_normal((16, 1))
    return X, Y, 0.5 * rng.standard_normal((4, 1)), np.array([0.2])


def np_grads(X, Y, w, b):
    """∂/∂w and ∂/∂b of mean((Xw + b − y)²), by hand."""
    r = X @ w + b - Y
    return [2.0 / r.size * X.T @ r, 2.0 / r.size * r.sum(axis=0)]


def build(dtype, w0, b0):
    x = gg.placeholder((None, 4), name="x", dtype=dtype)
    y = gg.placeholder((None, 1), name="y", dtype=dtype)
    w = gg.variable(w0, name="w", dtype=dtype)
    b = gg.variable(b0, name="b", dtype=dtype)
    return x, y, w, b, gg.mse(x @ w + b, y)


# ---- the published rules, transcribed (p: parameter, g: gradient, s: its state, t: step from 1) --

def ref_sgd(p, g, s, t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    d = g + weight_decay * p
    if momentum != 0:
        buf = d.copy() if t == 1 else momentum * s["momentum_buffer"] + (1 - dampening) * d
        s["momentum_buffer"] = buf
        d = d + momentum * buf if nesterov else buf
    return p - lr * d


def ref_rmsprop(p, g, s, t, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    g = g + weight_decay * p
    sq = s["square_avg"] = alpha * s.get("square_avg", 0.0) + (1 - alpha) * g * g
    if centered:
        ga = s["grad_avg"] = alpha * s.get("grad_avg", 0.0) + (1 - alpha) * g
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0:
        buf = s["momentum_buffer"] = momentum * s.get("momentum_buffer", 0.0) + g / avg
        return p - lr * buf
    return p - lr * g / avg


def ref_adam(p, g, s, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = s["exp_avg"] = b1 * s.get("exp_avg", 0.0) + (1 - b1) * g
    v = s["exp_avg_sq"] = b2 * s.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
    if amsgrad:
        v = s["max_exp_avg_sq"] = np.maximum(s.get("max_exp_avg_sq", 0.0), v)
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def ref_adamw(p, g, s, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
    return ref_adam(p, g, s, t, lr, betas, eps, weight_decay, amsgrad, decoupled=True)


def ref_adamax(p, g, s, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    g = g + weight_decay * p
    m = s["exp_avg"] = b1 * s.get("exp_avg", 0.0) + (1 - b1) * g
    u = s["exp_inf"] = np.maximum(b2 * s.get("exp_inf", 0.0), np.abs(g) + eps)
    return p - lr / (1 - b1 ** t) * m / u


def ref_nadam(p, g, s, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
              decoupled_weight_decay=False):
    b1, b2 = betas
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    prod = s["mu_product"] = s.get("mu_product", 1.0) * mu
    m = s["exp_avg"] = b1 * s.get("exp_avg", 0.0) + (1 - b1) * g
    v = s["exp_avg_sq"] = b2 * s.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
    denom = np.sqrt(v / (1 - b2 ** t)) + eps
    return p - lr * (1 - mu) / (1 - prod) * g / denom - lr * mu_next / (1 - prod * mu_next) * m / denom


def ref_adagrad(p, g, s, t, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    g = g + weight_decay * p
    acc = s["sum"] = s.get("sum", initial_accumulator_value) + g * g
    return p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(acc) + eps)


def ref_adadelta(p, g, s, t, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    g = g + weight_decay * p
    sq = s["square_avg"] = rho * s.get("square_avg", 0.0) + (1 - rho) * g * g
    delta = np.sqrt(s.get("acc_delta", 0.0) + eps) / np.sqrt(sq + eps) * g
    s["acc_delta"] = rho * s.get("acc_delta", 0.0) + (1 - rho) * delta * delta
    return p - lr * delta


def ref_ftrl(p, g, s, t, lr, learning_rate_power=-0.5, initial_accumulator_value=0.1, l1=0.0, l2=0.0,
             l2_shrinkage=0.0, beta=0.0):
    """TensorFlow ApplyFtrlV2, with Keras's beta folded into l2 as l2 + beta/(2·lr)."""
    n = s.get("accumulator", np.full_like(p, initial_accumulator_value))
    z = s.get("linear", np.zeros_like(p))
    power = -learning_rate_power
    n_new = n + g * g
    z = z + (g + 2 * l2_shrinkage * p) - (n_new ** power - n ** power) / lr * p
    l2_total = l2 + beta / (2 * lr)
    s["accumulator"], s["linear"] = n_new, z
    return np.where(np.abs(z) > l1, (l1 * np.sign(z) - z) / (n_new ** power / lr + 2 * l2_total), 0.0)


def ref_lion(p, g, s, t, lr, betas=(0.9, 0.99), weight_decay=0.0):
    b1, b2 = betas
    m = s.get("exp_avg", np.zeros_like(p))
    p = p * (1 - lr * weight_decay) - lr * np.sign(b1 * m + (1 - b1) * g)
    s["exp_avg"] = b2 * m + (1 - b2) * g
    return p


REFERENCES = {"SGD": ref_sgd, "RMSprop": ref_rmsprop, "Adam": ref_adam, "AdamW": ref_adamw, "Adamax": ref_adamax,
              "NAdam": ref_nadam, "Adagrad": ref_adagrad, "Adadelta": ref_adadelta, "Ftrl": ref_ftrl,
              "Lion": ref_lion}

CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, centered=True, momentum=0.5, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("Adamax", dict(lr=0.05)),
    ("Adamax", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.01)),
    ("NAdam", dict(lr=0.05)),
    ("NAdam", dict(lr=0.05, weight_decay=0.01, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.05, weight_decay=0.05, decoupled_weight_decay=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-8)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01)),
    ("Ftrl", dict(lr=0.1)),
    ("Ftrl", dict(lr=0.1, l1=0.01, l2=0.01, l2_shrinkage=0.01, beta=0.1)),
    ("Ftrl", dict(lr=0.2, learning_rate_power=-0.7, l1=0.05, initial_accumulator_value=0.5)),
    ("Lion", dict(lr=0.01)),
    ("Lion", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)),
]


def tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,hyper", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_published_rule_step_by_step(name, hyper, dtype):
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build(dtype, w0, b0)
    opt = getattr(gg.optim, name)(**hyper)
    step = gg.compile(loss, optimizer=opt)
    rule = REFERENCES[name]
    params, states = [w0.copy(), b0.copy()], [{}, {}]
    tol = tolerance(dtype)
    losses = []
    for t in range(1, STEPS + 1):
        losses.append(float(step(x=X, y=Y)))
        grads = np_grads(X, Y, *params)
        params = [rule(p, g, s, t, **hyper) for p, g, s in zip(params, grads, states)]
        np.testing.assert_allclose(w.value, params[0], **tol, err_msg=f"w after step {t}")
        np.testing.assert_allclose(b.value, params[1], **tol, err_msg=f"b after step {t}")
    assert opt.step_count == STEPS
    assert losses[-1] < losses[0]      # every configuration above makes progress on this problem
    # the state variables hold PyTorch's state under PyTorch's names
    for var, ref_state in zip((w, b), states):
        state = {k: v.value for k, v in opt.state_of(var).items()}
        assert set(state) == set(ref_state)
        for key, value in ref_state.items():
            np.testing.assert_allclose(state[key], value, **tol, err_msg=key)


DECAYING_STATE = [("SGD", dict(momentum=0.9)), ("RMSprop", dict(centered=True, momentum=0.5)),
                  ("Adam", dict()), ("AdamW", dict(amsgrad=True)), ("Adamax", dict()), ("NAdam", dict()),
                  ("Adadelta", dict()), ("Lion", dict())]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,hyper", DECAYING_STATE, ids=[n for n, _ in DECAYING_STATE])
def test_moving_averages_flush_subnormals_to_zero(name, hyper, dtype):
    """A moving average of zero gradients decays towards 0; where it would fall below the smallest
    normal number it is stored as 0 (subnormal arithmetic is ~20x slower on x86). Normal values
    are untouched."""
    w = gg.variable(np.ones(2), name="w", dtype=dtype)
    c = gg.placeholder((2,), name="c", dtype=dtype)
    opt = getattr(gg.optim, name)(lr=0.01, **hyper)
    step = gg.compile(gg.sum(w * c), optimizer=opt)
    step(c=np.ones(2))                                  # every state slot gets going
    tiny = np.finfo(dtype).tiny
    slots = [s for s in opt.state_of(w).values() if s.value.shape == (2,)]
    assert slots
    for slot in slots:
        slot.assign(np.array([tiny / 4, 0.5]))          # a subnormal, and a normal value
    step(c=np.zeros(2))                                  # zero gradients: the averages decay
    for key, slot in opt.state_of(w).items():
        if slot.value.shape != (2,):
            continue
        value = slot.value
        if key in ("max_exp_avg_sq", "exp_inf"):        # running maxima, not averages: nothing decays
            continue
        assert value[0] == 0.0, f"{key}: {value[0]!r} kept"
        assert np.isfinite(value[1]) and abs(value[1]) >= tiny, key
    assert np.all(np.isfinite(w.value))


def test_defaults_are_pytorchs():
    expected = {
        "SGD": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
        "RMSprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
        "Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False),
        "AdamW": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False),
        "Adamax": dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
        "NAdam": dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                      decoupled_weight_decay=False),
        "Adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10),
        "Adadelta": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0),
        "Ftrl": dict(lr=1e-3, learning_rate_power=-0.5, initial_accumulator_value=0.1, l1=0.0, l2=0.0,
                     l2_shrinkage=0.0, beta=0.0),
        "Lion": dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0),
    }
    for name, defaults in expected.items():
        assert getattr(gg.optim, name)().defaults == defaults, name


# ---- Ftrl -----------------------------------------------------------------------------------

def test_ftrl_two_steps_by_hand():
    """lr = 1, p = ½, n₀ = 0, l1 = ½, l2 = ¼, gradients g₁ = (3, 0.3), g₂ = (4, 0.1), w₀ = 0:
    step 1: n = 9,  z = 3,            w = (½ − 3)/(3 + ½)            = −5/7
    step 2: n = 25, z = 3 + 4 + 2·5/7 = 59/7,  w = (½ − 59/7)/(5 + ½) = −111/77
    the second coordinate's |z| (0.3, then 0.4) stays ≤ l1, so its weight is exactly 0."""
    w = gg.variable(np.zeros(2), name="w", dtype="float64")
    c = gg.placeholder((2,), name="c", dtype="float64")
    opt = gg.optim.Ftrl(lr=1.0, initial_accumulator_value=0.0, l1=0.5, l2=0.25)
    step = gg.compile(gg.sum(w * c), optimizer=opt)    # the gradient is c itself
    step(c=np.array([3.0, 0.3]))
    assert w.value[0] == pytest.approx(-5 / 7, abs=1e-15) and w.value[1] == 0.0
    step(c=np.array([4.0, 0.1]))
    assert w.value[0] == pytest.approx(-111 / 77, abs=1e-15) and w.value[1] == 0.0
    state = opt.state_of(w)
    np.testing.assert_allclose(state["accumulator"].value, [25.0, 0.1])
    np.testing.assert_allclose(state["linear"].value, [59 / 7, 0.4], rtol=1e-15)


def test_ftrl_beta_and_shrinkage_by_hand():
    """One step from w₀ = 1 with g = 2, lr = ½, n₀ = 0, beta = 1, l2_shrinkage = ¼:
    ĝ = 2 + 2·¼·1 = 2.5; n = 4; z = 2.5 − (2 − 0)/½·1 = −1.5; w = 1.5/(2/½ + 1/½) = 0.25."""
    w = gg.variable(np.ones(1), name="w", dtype="float64")
    c = gg.placeholder((1,), name="c", dtype="float64")
    step = gg.compile(gg.sum(w * c), optimizer=gg.optim.Ftrl(lr=0.5, initial_accumulator_value=0.0, beta=1.0,
                                                              l2_shrinkage=0.25))
    step(c=np.array([2.0]))
    assert w.value[0] == pytest.approx(0.25, abs=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ftrl_large_l1_zeroes_every_weight(dtype):
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build(dtype, w0, b0)
    step = gg.compile(loss, optimizer=gg.optim.Ftrl(lr=0.1, l1=100.0))
    for _ in range(10):
        step(x=X, y=Y)
        assert np.all(w.value == 0) and np.all(b.value == 0)


# ---- schedules ------------------------------------------------------------------------------

def sgd_with_lrs(lrs, X, Y, w0, b0):
    params = [w0.copy(), b0.copy()]
    trajectory = []
    for t, lr in enumerate(lrs, start=1):
        grads = np_grads(X, Y, *params)
        params = [ref_sgd(p, g, {}, t, lr) for p, g in zip(params, grads)]
        trajectory.append(params[0])
    return trajectory


def test_schedule_changes_lr_without_recompiling(monkeypatch):
    import graphgrad.runtime as runtime
    compiles = []
    real_build_plan = runtime.build_plan
    monkeypatch.setattr(runtime, "build_plan", lambda *a, **k: compiles.append(1) or real_build_plan(*a, **k))
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build("float64", w0, b0)
    opt = gg.optim.SGD(lr=0.1)
    step = gg.compile(loss, optimizer=opt)
    sched = gg.optim.StepLR(opt, step_size=5, gamma=0.5)
    used = []
    for _ in range(20):
        used.append(opt.lr)
        step(x=X, y=Y)
        sched.step()
    assert used == [0.1 * 0.5 ** (t // 5) for t in range(20)]
    assert len(compiles) == 1
    np.testing.assert_allclose(w.value, sgd_with_lrs(used, X, Y, w0, b0)[-1], rtol=1e-12)


def test_setting_lr_directly_takes_effect_next_step():
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build("float64", w0, b0)
    opt = gg.optim.SGD(lr=0.1)
    step = gg.compile(loss, optimizer=opt)
    lrs = [0.1, 0.0, 0.3, 0.05]
    plans = []
    for lr in lrs:
        opt.lr = lr
        before = w.value
        step(x=X, y=Y)
        plans.append(step.plan())
        if lr == 0.0:
            np.testing.assert_array_equal(w.value, before)
    np.testing.assert_allclose(w.value, sgd_with_lrs(lrs, X, Y, w0, b0)[-1], rtol=1e-12)
    assert all(p is plans[0] for p in plans)      # one specialisation: a new lr recompiles nothing


def schedule_values(make, n, lr=1.0):
    w = gg.variable(np.zeros(1), name="w")
    opt = gg.optim.SGD([w], lr=lr)
    sched = make(opt)
    values = []
    for _ in range(n):
        values.append(opt.lr)
        sched.step()
    return values


def test_schedule_closed_forms():
    o = gg.optim
    assert schedule_values(lambda opt: o.StepLR(opt, 2, gamma=0.1), 5) == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert schedule_values(lambda opt: o.MultiStepLR(opt, [1, 3], gamma=0.5), 5) == pytest.approx(
        [1, 0.5, 0.5, 0.25, 0.25])
    assert schedule_values(lambda opt: o.ExponentialLR(opt, 0.9), 4) == pytest.approx([1, 0.9, 0.81, 0.729])
    assert schedule_values(lambda opt: o.CosineAnnealingLR(opt, T_max=4, eta_min=0.2), 5) == pytest.approx(
        [0.2 + 0.8 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)])
    assert schedule_values(lambda opt: o.LinearLR(opt, start_factor=0.25, total_iters=3), 6, lr=0.4) == \
        pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert schedule_values(lambda opt: o.LambdaLR(opt, lambda t: 1 / (t + 1)), 3, lr=0.6) == pytest.approx(
        [0.6, 0.3, 0.2])
    assert schedule_values(lambda opt: o.FunctionLR(opt, lambda t: 0.01 * (t + 1)), 3) == pytest.approx(
        [0.01, 0.02, 0.03])
    warm_then_decay = lambda opt: o.SequentialLR(opt, [o.LinearLR(opt, 0.5, total_iters=2),  # noqa: E731
                                                       o.ExponentialLR(opt, 0.5)], milestones=[2])
    assert schedule_values(warm_then_decay, 5) == pytest.approx([0.5, 0.75, 1.0, 0.5, 0.25])


def test_schedule_scales_each_group_from_its_own_lr():
    w = gg.variable(np.zeros(2), name="w")
    b = gg.variable(np.zeros(1), name="b")
    opt = gg.optim.Adam([{"params": [w]}, {"params": [b], "lr": 0.01}], lr=0.1)
    sched = gg.optim.ExponentialLR(opt, gamma=0.5)
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.05, 0.005])
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.01]


# ---- clipping -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_by_value(dtype):
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build(dtype, w0, b0)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1, clip_value=0.5))
    params = [w0.copy(), b0.copy()]
    clipped_some = False
    for _ in range(10):
        step(x=X, y=Y)
        grads = np_grads(X, Y, *params)
        clipped_some |= any(np.any(np.abs(g) > 0.5) for g in grads)
        params = [p - 0.1 * np.clip(g, -0.5, 0.5) for p, g in zip(params, grads)]
        np.testing.assert_allclose(w.value, params[0], **tolerance(dtype))
        np.testing.assert_allclose(b.value, params[1], **tolerance(dtype))
    assert clipped_some


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_by_global_norm(dtype):
    """torch.nn.utils.clip_grad_norm_: every gradient times min(1, max_norm/(‖all gradients‖ + 1e-6))."""
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build(dtype, w0, b0)
    max_norm = 1.0
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=0.05, clip_norm=max_norm))
    params, states = [w0.copy(), b0.copy()], [{}, {}]
    norms = []
    for t in range(1, 31):
        step(x=X, y=Y)
        grads = np_grads(X, Y, *params)
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        norms.append(norm)
        coef = min(1.0, max_norm / (norm + 1e-6))
        params = [ref_adam(p, g * coef, s, t, lr=0.05) for p, g, s in zip(params, grads, states)]
        np.testing.assert_allclose(w.value, params[0], **tolerance(dtype))
        np.testing.assert_allclose(b.value, params[1], **tolerance(dtype))
    assert max(norms) > max_norm > min(norms)    # both regimes were exercised


def test_clipping_kernels_directly():
    from graphgrad._core import ffi, lib
    g = np.array([3.0, -4.0, 0.5, np.nan])
    out = np.zeros(4)
    lib.gg_clip_by_value_f64(ffi.from_buffer("double[]", out), ffi.from_buffer("double[]", g), 4, 1.0)
    np.testing.assert_array_equal(out[:3], [1.0, -1.0, 0.5])
    assert np.isnan(out[3])                   # NaN is not hidden by clipping
    total = np.zeros(1)
    acc = np.array([11.0])
    lib.gg_grad_sumsq_f64(ffi.from_buffer("double[]", total), ffi.from_buffer("double[]", g[:2]),
                          ffi.from_buffer("double[]", acc), 2)
    assert total[0] == 36.0
    lib.gg_clip_by_norm_f64(ffi.from_buffer("double[]", out), ffi.from_buffer("double[]", g), 
                            ffi.from_buffer("double[]", total), 2, 3.0)
    np.testing.assert_allclose(out[:2], np.array([3.0, -4.0]) * 3.0 / (6.0 + 1e-6), rtol=1e-15)


def test_clip_instructions_sit_between_gradients_and_updates():
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build("float64", w0, b0)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1, clip_norm=1.0, clip_value=2.0))
    plan = step.plan(batch_size=16)
    ops = [ins.node.op for ins in plan.instructions]
    clips = [i for i, op in enumerate(ops) if op in ("clip_by_value", "grad_sumsq", "clip_by_norm")]
    assert len(clips) == 6 and ops.count("grad_sumsq") == 2
    # the norm is complete before any gradient is scaled by it, and each update reads its gradient
    # clipped (the schedule runs an update as soon as its clipped gradient exists)
    sumsq = [i for i, op in enumerate(ops) if op == "grad_sumsq"]
    assert max(sumsq) < min(i for i, op in enumerate(ops) if op == "clip_by_norm")
    made_at = {ins.node.id: k for k, ins in enumerate(plan.instructions)}
    for k, ins in enumerate(plan.instructions):
        if ins.node.op.endswith("_update"):
            assert ins.node.inputs[1].op == "clip_by_norm" and made_at[ins.node.inputs[1].id] < k


# ---- parameter groups -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_parameter_groups_no_weight_decay_on_bias(dtype):
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build(dtype, w0, b0)
    opt = gg.optim.SGD([{"params": [w]}, {"params": [b], "weight_decay": 0.0, "lr": 0.02}],
                       lr=0.05, momentum=0.9, weight_decay=0.1)
    step = gg.compile(loss, optimizer=opt)
    params, states = [w0.copy(), b0.copy()], [{}, {}]
    hypers = [dict(lr=0.05, momentum=0.9, weight_decay=0.1), dict(lr=0.02, momentum=0.9, weight_decay=0.0)]
    for t in range(1, STEPS + 1):
        step(x=X, y=Y)
        grads = np_grads(X, Y, *params)
        params = [ref_sgd(p, g, s, t, **h) for p, g, s, h in zip(params, grads, states, hypers)]
        np.testing.assert_allclose(w.value, params[0], **tolerance(dtype))
        np.testing.assert_allclose(b.value, params[1], **tolerance(dtype))
    opt.param_groups[1]["lr"] = 0.0       # a group's lr is a runtime scalar too
    before = b.value
    step(x=X, y=Y)
    np.testing.assert_array_equal(b.value, before)


def test_default_group_collects_the_losss_variables():
    X, Y, w0, b0 = make_problem()
    x, y, w, b, loss = build("float64", w0, b0)
    opt = gg.optim.Adam(lr=0.01)
    gg.compile(loss, optimizer=opt)
    assert opt.param_groups[0]["params"] == [w, b]
    names = {v.name for v in opt.variables()}
    assert {"step", "lr", "w/exp_avg", "w/exp_avg_sq", "b/exp_avg", "b/exp_avg_sq"} <= names


# ---- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "fast"])
def test_bad_learning_rate(bad):
    with pytest.raises(OptimizerError, match="learning rate"):
        gg.optim.Adam(lr=bad)
    opt = gg.optim.SGD(lr=0.1)
    with pytest.raises(OptimizerError, match="learning rate"):
        opt.lr = bad
    assert opt.lr == 0.1                   # a rejected value changes nothing
    with pytest.raises(OptimizerError):
        opt.param_groups[0]["lr"] = bad


def test_ftrl_rejects_zero_lr():
    with pytest.raises(OptimizerError, match="Ftrl"):
        gg.optim.Ftrl(lr=0.0)


def test_no_variables():
    x = gg.placeholder((3,), name="x")
    with pytest.raises(OptimizerError, match="no variables"):
        gg.compile(gg.sum(x * x), optimizer=gg.optim.SGD(lr=0.1))
    with pytest.raises(OptimizerError, match="empty"):
        gg.optim.SGD([], lr=0.1)


def test_same_variable_twice():
    w = gg.variable(np.ones(2), name="w")
    with pytest.raises(OptimizerError, match='"w" appears more than once'):
        gg.optim.SGD([w, w], lr=0.1)
    with pytest.raises(OptimizerError, match='"w" appears more than once'):
        gg.optim.SGD([{"params": [w]}, {"params": [w], "lr": 0.2}], lr=0.1)
    with pytest.raises(OptimizerError, match='"w" is listed twice'):
        gg.optim.SGD(lr=0.1).minimize(gg.sum(w * w), var_list=[w, w])


def test_other_configuration_errors():
    w = gg.variable(np.ones(2), name="w")
    v = gg.variable(np.ones(2), name="v")
    with pytest.raises(TypeError, match="lr="):
        gg.optim.SGD(0.1)
    with pytest.raises(OptimizerError, match="beta parameter at index 1"):
        gg.optim.Adam(betas=(0.9, 1.0))
    with pytest.raises(OptimizerError, match="Nesterov"):
        gg.optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(OptimizerError, match="unknown hyperparameters"):
        gg.optim.SGD([{"params": [w], "mommentum": 0.9}], lr=0.1)
    with pytest.raises(OptimizerError, match="learning_rate_power"):
        gg.optim.Ftrl(learning_rate_power=0.5)
    with pytest.raises(OptimizerError, match="clip_norm"):
        gg.optim.SGD(lr=0.1, clip_norm=-1.0)
    with pytest.raises(OptimizerError, match="variables"):
        gg.optim.SGD([w * 2.0], lr=0.1)
    opt = gg.optim.SGD([w], lr=0.1, momentum=0.5)
    with pytest.raises(OptimizerError, match='"v" is in none'):
        opt.minimize(gg.sum(w * v), var_list=[w, v])
    gg.compile(gg.sum(w * w), optimizer=opt)
    with pytest.raises(OptimizerError, match="fixed once"):
        opt.param_groups[0]["momentum"] = 0.9
    opt.param_groups[0]["lr"] = 0.5        # lr stays a runtime scalar
    assert opt.lr == 0.5


# ---- large variables: the threaded, vectorised path of every kernel ---------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_large_variables_use_the_threaded_kernels(dtype):
    """40,000 values (above the kernels' threading threshold), two threads, clipping on: the
    same rules hold. loss = mean((w − target)²), so ∂loss/∂w = 2(w − target)/n."""
    n = 40_000
    rng = np.random.default_rng(3)
    w0, target = rng.standard_normal(n), rng.standard_normal(n)
    cases = [("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
             ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
             ("SGD", dict(lr=0.5, momentum=0.9, nesterov=True)),
             ("Ftrl", dict(lr=0.5, l1=1e-5)), ("Lion", dict(lr=0.01)), ("NAdam", dict(lr=0.01)),
             ("Adagrad", dict(lr=0.1)), ("Adadelta", dict()), ("Adamax", dict(lr=0.01))]
    threads = gg.get_num_threads()
    gg.set_num_threads(2)
    try:
        for name, hyper in cases:
            w = gg.variable(w0, name="w", dtype=dtype)
            t = gg.constant(target, dtype=dtype)
            step = gg.compile(gg.mse(w, t), optimizer=getattr(gg.optim, name)(clip_norm=0.005, **hyper))
            p, state = w0.copy(), {}
            for k in range(1, 6):
                step()
                g = 2 * (p - target) / n
                g = g * min(1.0, 0.005 / (np.linalg.norm(g) + 1e-6))   # clipped: the norm is ~0.014
                p = REFERENCES[name](p, g, state, k, **hyper)
                np.testing.assert_allclose(w.value, p, **tolerance(dtype), err_msg=f"{name} step {k}")
    finally:
        gg.set_num_threads(threads)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_updates_that_read_each_others_variable(name):
    """loss = v1·v2: each gradient is the other variable (the simplify pass turns 1·v into v), so
    each update reads the variable the other one overwrites; both must read the old values."""
    v1 = gg.variable(0.5, name="v1", dtype="float64")
    v2 = gg.variable(-0.3, name="v2", dtype="float64")
    step = gg.compile(v1 * v2, optimizer=getattr(gg.optim, name)(lr=0.1))
    p, states = [np.float64(0.5), np.float64(-0.3)], [{}, {}]
    for t in range(1, 4):
        step()
        grads = [p[1], p[0]]
        p = [REFERENCES[name](x, g, s, t, lr=0.1) for x, g, s in zip(p, grads, states)]
        assert float(v1.value) == pytest.approx(p[0], abs=1e-15) and float(v2.value) == pytest.approx(p[1], abs=1e-15)


# ---- finding the API: signatures, unknown keywords, names and classes ----------------------

ALL_OPTIMIZERS = sorted(gg.optim.OPTIMIZERS.values(), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS, ids=lambda c: c.__name__)
def test_every_signature_and_docstring_shows_clipping(cls):
    import inspect
    params = inspect.signature(cls).parameters
    assert params["clip_norm"].default is None and params["clip_value"].default is None
    assert "clip_norm" in cls.__doc__ and "clip_value" in cls.__doc__


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS, ids=lambda c: c.__name__)
def test_an_unknown_keyword_lists_the_valid_ones(cls):
    with pytest.raises(OptimizerError) as err:
        cls(clipnorm=1.0)
    text = str(err.value)
    assert "'clipnorm' (did you mean 'clip_norm'?)" in text and "valid:" in text and "clip_value" in text


def test_optimizer_by_name_or_instance_and_a_class_is_a_clear_error():
    adam = gg.optim.Adam(lr=0.5)
    assert gg.optim.get(adam) is adam
    made = gg.optim.get("RMSprop")
    assert type(made) is gg.optim.RMSprop and made.lr == gg.optim.RMSprop().lr
    with pytest.raises(OptimizerError, match=r"pass an optimizer instance, e.g. gg.optim.Adam\(lr=1e-3\)"):
        gg.optim.get(gg.optim.Adam)
    with pytest.raises(OptimizerError, match="unknown optimizer 'adamm'"):
        gg.optim.get("adamm")
    with pytest.raises(OptimizerError, match="got float"):
        gg.optim.get(0.1)
