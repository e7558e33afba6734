"""Optimizer update cost: graphgrad's C update kernels (csrc/optim.c, one call per variable, as the
interpreter makes them) against torch.optim on the same parameters with the same gradients
(the default foreach implementation and, for Adam/AdamW/SGD, fused=True), float32.

Parameters: the 784-1024-1024-10 MLP of bench/train_step.py (1.86M values in 6 variables).
Each implementation runs in its own process pinned to 1 or 2 threads. Prints µs per update
and the ratio torch / graphgrad (> 1: graphgrad faster); writes bench/results/optim_update.json.
Run: python bench/optim_update.py [--quick] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

SHAPES = [(784, 1024), (1024,), (1024, 1024), (1024,), (1024, 10), (10,)]
RULES = ["sgd_momentum", "sgd_nesterov", "adam", "adam_amsgrad", "adamw", "adamax", "nadam", "rmsprop",
         "rmsprop_centered", "adagrad", "adadelta", "ftrl", "lion"]
IMPLS = ["graphgrad", "torch", "torch_fused"]
FUSED = {"sgd_momentum", "sgd_nesterov", "adam", "adam_amsgrad", "adamw"}


def _arrays():
    import numpy as np
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-2 for s in SHAPES]
    return params, grads


def graphgrad_update(rule):
    """A closure running one update of every variable through the C kernels."""
    import numpy as np
    from graphgrad._core import ffi, lib
    params, grads = _arrays()
    state = [[np.zeros_like(p) for _ in range(3)] for p in params]
    mu_product = np.ones(1)
    mu = ffi.cast("double *", mu_product.ctypes.data)
    ptr = lambda a: ffi.cast("float *", a.ctypes.data)  # noqa: E731

    def bind(P, G, S0, S1, S2, n):   # noqa: N803 (one call for one variable; binds its pointers now)
        return {
            "sgd_momentum": lambda: lib.gg_sgd_update_f32(P, G, S0, n, 1e-3, 2, 0.9, 0.0, 0.0, 0),
            "sgd_nesterov": lambda: lib.gg_sgd_update_f32(P, G, S0, n, 1e-3, 2, 0.9, 0.0, 0.0, 1),
            "adam": lambda: lib.gg_adam_update_f32(P, G, S0, S1, ffi.NULL, n, 1e-3, 2, 0.9, 0.999, 1e-8, 0.0, 0),
            "adam_amsgrad": lambda: lib.gg_adam_update_f32(P, G, S0, S1, S2, n, 1e-3, 2, 0.9, 0.999, 1e-8, 0.0, 0),
            "adamw": lambda: lib.gg_adam_update_f32(P, G, S0, S1, ffi.NULL, n, 1e-3, 2, 0.9, 0.999, 1e-8, 1e-2, 1),
            "adamax": lambda: lib.gg_adamax_update_f32(P, G, S0, S1, n, 2e-3, 2, 0.9, 0.999, 1e-8, 0.0),
            "nadam": lambda: lib.gg_nadam_update_f32(P, G, S0, S1, mu, n, 2e-3, 2, 0.9, 0.999, 1e-8, 0.0, 4e-3, 0),
            "rmsprop": lambda: lib.gg_rmsprop_update_f32(P, G, S0, ffi.NULL, ffi.NULL, n, 1e-3, 0.99, 1e-8, 0.0, 0.0),
            "rmsprop_centered": lambda: lib.gg_rmsprop_update_f32(P, G, S0, S1, ffi.NULL, n, 1e-3, 0.99, 1e-8, 0.0,
                                                                  0.0),
            "adagrad": lambda: lib.gg_adagrad_update_f32(P, G, S0, n, 1e-3, 2, 0.0, 0.0, 1e-10),
            "adadelta": lambda: lib.gg_adadelta_update_f32(P, G, S0, S1, n, 1.0, 0.9, 1e-6, 0.0),
            "ftrl": lambda: lib.gg_ftrl_update_f32(P, G, S0, S1, n, 1e-3, -0.5, 0.0, 0.0, 0.0, 0.0),
            "lion": lambda: lib.gg_lion_update_f32(P, G, S0, n, 1e-4, 0.9, 0.99, 0.0),
        }[rule]

    calls = [bind(ptr(p), ptr(g), ptr(s0), ptr(s1), ptr(s2), p.size) for p, g, (s0, s1, s2) in zip(params, grads, state)]
    def step():
        for call in calls:
            call()
    step._keep = (params, grads, state, mu_product)   # the kernels hold raw pointers into these
    return step


def torch_update(rule, fused):
    import torch
    params, grads = _arrays()
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g)
    kw = {"fused": True} if fused else {}
    make = {
        "sgd_momentum": lambda: torch.optim.SGD(tensors, lr=1e-3, momentum=0.9, **kw),
        "sgd_nesterov": lambda: torch.optim.SGD(tensors, lr=1e-3, momentum=0.9, nesterov=True, **kw),
        "adam": lambda: torch.optim.Adam(tensors, lr=1e-3, **kw),
        "adam_amsgrad": lambda: torch.optim.Adam(tensors, lr=1e-3, amsgrad=True, **kw),
        "adamw": lambda: torch.optim.AdamW(tensors, lr=1e-3, **kw),
        "adamax": lambda: torch.optim.Adamax(tensors, lr=2e-3),
        "nadam": lambda: torch.optim.NAdam(tensors, lr=2e-3),
        "rmsprop": lambda: torch.optim.RMSprop(tensors, lr=1e-3),
        "rmsprop_centered": lambda: torch.optim.RMSprop(tensors, lr=1e-3, centered=True),
        "adagrad": lambda: torch.optim.Adagrad(tensors, lr=1e-3),
        "adadelta": lambda: torch.optim.Adadelta(tensors, lr=1.0),
        "ftrl": None,   # not in torch.optim
        "lion": None,
    }[rule]
    if make is None:
        return None
    opt = make()
    opt.step()
    return opt.step


def worker(args):
    if args.impl == "graphgrad":
        import graphgrad as gg
        gg.set_num_threads(args.threads)
        fn = graphgrad_update(args.rule)
    else:
        import torch
        torch.set_num_threads(args.threads)
        fn = torch_update(args.rule, fused=args.impl == "torch_fused")
    if fn is None:
        print(json.dumps({"us": None}))
        return
    seconds = _common.time_per_call(fn, min_time=0.3 if args.quick else 1.0)
    print(json.dumps({"us": seconds * 1e6}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--impl", choices=IMPLS)
    parser.add_argument("--rule", choices=RULES)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        return worker(args)
    impls = IMPLS if _common.torch_available() else ["graphgrad"]
    rows = []
    print(f"update of {sum(int(__import__('numpy').prod(s)) for s in SHAPES):,} float32 parameters "
          f"({len(SHAPES)} variables), µs per step")
    print(f"{'rule':<14}{'threads':>8}" + "".join(f"{i:>14}" for i in impls) + f"{'torch/gg':>10}{'fused/gg':>10}")
    for threads in args.threads:
        for rule in RULES:
            if rule not in FUSED and "torch_fused" in impls:
                wanted = [i for i in impls if i != "torch_fused"]
            else:
                wanted = impls
            extra = ["--quick"] if args.quick else []
            us = {i: (_common.run_worker(__file__, ["--impl", i, "--rule", rule, *extra], threads) or {}).get("us")
                  for i in wanted}
            gg_us = us.get("graphgrad")
            ratio = lambda k: f"{us[k] / gg_us:10.2f}" if us.get(k) and gg_us else f"{'-':>10}"  # noqa: E731
            cells = "".join(f"{us[i]:14.1f}" if us.get(i) else f"{'-':>14}" for i in impls)
            print(f"{rule:<14}{threads:>8}{cells}{ratio('torch')}{ratio('torch_fused')}")
            rows.append({"rule": rule, "threads": threads, **{i: us.get(i) for i in impls}})
    path = _common.write_json("optim_update.json", {"machine": _common.machine(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
